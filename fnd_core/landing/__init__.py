"""Landing zone: read landed files, check each row, copy accepted images into the image store.

Modules: :mod:`~fnd_core.landing.storage` (local / ``gs://`` file helpers),
:mod:`~fnd_core.landing.readers` (formats -> raw rows), :mod:`~fnd_core.landing.rows` (row
rules -> accepted posts or quarantined rows), :mod:`~fnd_core.landing.images` (image checks,
``open_rgb`` and the content-addressed store). Nothing is imported here, so importing the
package stays free.
"""
