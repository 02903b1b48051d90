-- Hand-made registry changes (fnd model retire / rollback) are recorded on the version they
-- touch, like forced promotions: who, when, why, and what the champion was before.

alter table fnd.model_versions add column audit jsonb not null default '[]'::jsonb;
alter table fnd.model_versions add constraint model_versions_audit_is_a_list
    check (jsonb_typeof(audit) = 'array');
comment on column fnd.model_versions.audit is 'Hand-made changes to this version: [{action, by, at, reason, champion_before}], oldest first.';
