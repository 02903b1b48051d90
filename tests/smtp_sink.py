"""A mail server on loopback that keeps what it is sent: the far end of a real SMTP notifier.

Speaks the part of SMTP that ``smtplib`` (Airflow's ``SmtpHook``) uses without TLS or login:
EHLO/HELO, MAIL, RCPT, DATA, RSET, NOOP, QUIT. Each accepted message is parsed with the
standard ``email`` package and appended to :attr:`SmtpSink.messages`.
"""

from __future__ import annotations

import email
import email.policy
import socketserver
import threading
from email.message import EmailMessage


class SmtpSink:
    """``with SmtpSink() as sink:`` serves on ``sink.port`` until the block ends."""

    def __init__(self) -> None:
        self.messages: list[EmailMessage] = []
        sink = self

        class Session(socketserver.StreamRequestHandler):
            def handle(self) -> None:
                self._reply("220 fnd-test-sink ready")
                while line := self.rfile.readline():
                    verb = line.decode("ascii", "replace").strip().split(" ", 1)[0].upper()
                    if verb in {"EHLO", "HELO"}:
                        self._reply("250 fnd-test-sink")
                    elif verb in {"MAIL", "RCPT", "RSET", "NOOP"}:
                        self._reply("250 OK")
                    elif verb == "DATA":
                        self._reply("354 end with <CRLF>.<CRLF>")
                        sink.messages.append(self._message())
                        self._reply("250 queued")
                    elif verb == "QUIT":
                        self._reply("221 bye")
                        return
                    else:
                        self._reply("502 not implemented")

            def _message(self) -> EmailMessage:
                lines = []
                while (line := self.rfile.readline()) not in (b".\r\n", b".\n", b""):
                    lines.append(line[1:] if line.startswith(b"..") else line)  # dot-unstuffing
                return email.message_from_bytes(b"".join(lines), policy=email.policy.default)

            def _reply(self, text: str) -> None:
                self.wfile.write(f"{text}\r\n".encode("ascii"))

        self._server = socketserver.ThreadingTCPServer(("127.0.0.1", 0), Session)
        self._server.daemon_threads = True
        self.port: int = self._server.server_address[1]

    def __enter__(self) -> SmtpSink:
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def __exit__(self, *exc: object) -> None:
        self._server.shutdown()
        self._server.server_close()
