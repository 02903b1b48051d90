#!/usr/bin/env bash
# Creates fnd's own database and role beside Airflow's metadata database, on the first start of
# the postgres service (the image runs /docker-entrypoint-initdb.d only on an empty data folder).
#
# Why a separate database: Airflow's `db migrate` owns the metadata schema and fnd's migrations
# (`fnd db upgrade`) own schema `fnd`; analysts and their read-only role never see Airflow's
# tables. The role gets CREATEROLE because migrations 004, 008 and 016 create the `fnd_analyst`
# and `fnd_reader` roles and the UI's read-only login `fnd_ui` (whose password `fnd db upgrade`
# sets). Roles are cluster-wide: they are created here, by the admin, if missing, and
# granted to fnd's role WITH ADMIN OPTION, so the migrations can comment on and grant them even
# where another fnd database on the same server made them first (PostgreSQL 16 lets only a
# role's admins do that).
#
# Executed when the file is executable, sourced by the image's entrypoint otherwise: so no
# `exit` and no `set -u` here.
set -e

psql -v ON_ERROR_STOP=1 --username "$POSTGRES_USER" --dbname "$POSTGRES_DB" \
    --set=fnd_db="${FND_DB_NAME:-fnd}" \
    --set=fnd_user="${FND_DB_USER:-fnd}" \
    --set=fnd_password="${FND_DB_PASSWORD:-fnd}" <<-'EOSQL'
	create role :"fnd_user" with login createrole password :'fnd_password';
	select 'create role fnd_analyst nologin'
	    where not exists (select from pg_roles where rolname = 'fnd_analyst') \gexec
	select 'create role fnd_reader nologin'
	    where not exists (select from pg_roles where rolname = 'fnd_reader') \gexec
	select 'create role fnd_ui login'
	    where not exists (select from pg_roles where rolname = 'fnd_ui') \gexec
	grant fnd_analyst, fnd_reader, fnd_ui to :"fnd_user" with admin option;
	create database :"fnd_db" with owner :"fnd_user";
	comment on database :"fnd_db" is 'fnd: posts, predictions, models (schema fnd); not Airflow''s';
EOSQL
