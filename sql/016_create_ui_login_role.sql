-- fnd_ui is the login the Airflow UI plugin connects as (the Airflow connection fnd_db_read):
-- it holds fnd_reader and nothing else. Taking fnd_reader by SET ROLE on the owner's login
-- was undone by one RESET ROLE; with this login, RESET ROLE leaves a role that can still only
-- read. `fnd db upgrade` sets its password (FND_DB_READ_PASSWORD, else one generated once and
-- kept under FND_HOME): SQL cannot read the environment. Roles are cluster-wide, hence the
-- existence check; the grant is per database.
do $$
begin
    if not exists (select from pg_roles where rolname = 'fnd_ui') then
        create role fnd_ui login nosuperuser nocreatedb nocreaterole noreplication;
    end if;
end
$$;
comment on role fnd_ui is 'The fnd UI plugin''s login: member of fnd_reader only, read-only by default.';
grant fnd_reader to fnd_ui;
alter role fnd_ui set default_transaction_read_only = on;
