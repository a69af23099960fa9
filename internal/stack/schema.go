package stack

import "fmt"

// jwtSub is the SQL expression for the "sub" claim of the request's JWT
// (NULL when there is none). PostgREST sets request.jwt.claims for every
// request; nullif guards against the empty value the setting has outside one.
const jwtSub = `(nullif(current_setting('request.jwt.claims', true), '')::json->>'sub')`

// schemaSQL returns the schema loaded into every stack: PostgREST's roles and
// the tables and functions of a small budgeting app.
func schemaSQL(authenticatorPassword string) string {
	return fmt.Sprintf(`
create role authenticator login noinherit password '%[1]s';
create role anon nologin;
create role authenticated nologin;
create role service_role nologin bypassrls;
grant anon, authenticated, service_role to authenticator;
grant usage on schema public to anon, authenticated, service_role;

create table public.budgets (
  id uuid primary key default gen_random_uuid(),
  owner_id text not null default %[2]s,
  name text not null,
  created_at timestamptz default now()
);

create table public.categories (
  id uuid primary key default gen_random_uuid(),
  budget_id uuid not null references public.budgets(id) on delete cascade,
  owner_id text not null default %[2]s,
  name text not null,
  group_name text,
  sort_order int not null default 0,
  is_income boolean not null default false,
  created_at timestamptz default now(),
  updated_at timestamptz default now()
);
create index categories_budget_id_idx on public.categories (budget_id);

create function public.touch_updated_at() returns trigger language plpgsql as $$
begin
  new.updated_at := now();
  return new;
end $$;
create trigger categories_touch_updated_at before update on public.categories
  for each row execute function public.touch_updated_at();

alter table public.budgets enable row level security;
alter table public.categories enable row level security;
create policy budgets_owner on public.budgets for all to authenticated
  using (owner_id = %[2]s) with check (owner_id = %[2]s);
-- A category belongs to its owner, and only inside a budget of the same
-- owner: checking owner_id alone would let a user add rows to (or move rows
-- into) another user's budget.
create policy categories_owner on public.categories for all to authenticated
  using (owner_id = %[2]s
         and exists (select 1 from public.budgets b where b.id = categories.budget_id and b.owner_id = %[2]s))
  with check (owner_id = %[2]s
         and exists (select 1 from public.budgets b where b.id = categories.budget_id and b.owner_id = %[2]s));

revoke all on public.budgets, public.categories from anon, public;
grant select, insert, update, delete on public.budgets, public.categories to authenticated;
grant all on public.budgets, public.categories to service_role;

create function public.slow(seconds float8) returns int language plpgsql volatile as $$
begin
  perform pg_sleep(seconds);
  return 1;
end $$;
create function public.slow_read(seconds float8) returns int language plpgsql stable as $$
begin
  perform pg_sleep(seconds);
  return 1;
end $$;
-- whoami names the principal a request runs as: the JWT's sub, or
-- 'service' for a JWT without one (the service key).
create function public.whoami() returns text language sql stable as $$
  select coalesce(%[2]s, 'service')
$$;
revoke execute on function public.slow(float8), public.slow_read(float8), public.touch_updated_at(), public.whoami() from public;
grant execute on function public.slow(float8), public.slow_read(float8), public.whoami() to service_role, authenticated;
`, authenticatorPassword, jwtSub)
}
