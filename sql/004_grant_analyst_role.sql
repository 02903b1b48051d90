-- fnd_analyst reads the views and nothing else: the tables stay private, so analysts
-- depend on the stable view interface and can never write. Roles are cluster-wide, hence
-- the existence check; grants are per database.
do $$
begin
    if not exists (select from pg_roles where rolname = 'fnd_analyst') then
        create role fnd_analyst nologin;
    end if;
end
$$;
comment on role fnd_analyst is 'Read-only analysts: SELECT on fnd views only.';
grant usage on schema fnd to fnd_analyst;
grant select on fnd.latest_predictions, fnd.daily_summary, fnd.model_leaderboard to fnd_analyst;
