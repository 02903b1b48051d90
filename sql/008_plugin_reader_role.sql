-- fnd_reader is what the Airflow UI plugin reads as: SELECT on every fnd table and view,
-- nothing else. The plugin sets this role on each connection and opens read-only
-- transactions, so a bug or an injected query in a page can read but never change data. A
-- deployment can go further and give the plugin its own login (see README, "Security").
-- Roles are cluster-wide, hence the existence check; grants are per database.
do $$
begin
    if not exists (select from pg_roles where rolname = 'fnd_reader') then
        create role fnd_reader nologin;
    end if;
end
$$;
comment on role fnd_reader is 'The fnd UI plugin: SELECT on fnd tables and views only.';
grant usage on schema fnd to fnd_reader;
grant select on all tables in schema fnd to fnd_reader;
alter default privileges in schema fnd grant select on tables to fnd_reader;
-- The migrating user may take the role (a superuser can anyway; an owner login needs this).
do $$
begin
    execute 'grant fnd_reader to ' || quote_ident(current_user);
end
$$;
