-- rdl 0.1.0 → 0.2.0 (ALTER EXTENSION rdl UPDATE TO '0.2.0').
-- Tasks get an owner role and grants; rdl's tables become writable by rdl alone (its
-- functions write them as the extension's owner) and readable row by row; training runs
-- are recorded in rdl.runs; new and changed functions. Models trained by 0.1.0 keep
-- working: their weights and configs are read unchanged.

\echo Use "ALTER EXTENSION rdl UPDATE TO '0.2.0'" to load this file. \quit

-- Ownership: every task goes to the extension's owner. 0.1.0 let any role write
-- created_by, so the name there proves nothing: it is reported (as a WARNING: extension
-- scripts run with client_min_messages = warning), and the superuser hands each task to
-- its creator (SELECT rdl_set_task_owner(task, role), from 0.3.0 on).
DROP VIEW rdl_tasks;
DO $$
DECLARE t record;
BEGIN
    FOR t IN SELECT name, created_by FROM rdl.tasks ORDER BY name LOOP
        RAISE WARNING 'rdl: task "%" (created_by says "%") now belongs to the extension''s owner; to hand it over: SELECT rdl_set_task_owner(%, %);',
            t.name, t.created_by, pg_catalog.quote_literal(t.name), pg_catalog.quote_literal(t.created_by);
    END LOOP;
END $$;
ALTER TABLE rdl.tasks ADD COLUMN owner pg_catalog.regrole;
UPDATE rdl.tasks SET owner = (SELECT e.extowner FROM pg_catalog.pg_extension e
                              WHERE e.extname OPERATOR(pg_catalog.=) 'rdl')::pg_catalog.regrole;
ALTER TABLE rdl.tasks ALTER COLUMN owner SET NOT NULL;
ALTER TABLE rdl.tasks DROP COLUMN created_by;

ALTER TABLE rdl.time_columns ALTER COLUMN set_by DROP DEFAULT;

REVOKE INSERT, UPDATE, DELETE ON rdl.time_columns FROM PUBLIC;
REVOKE INSERT, UPDATE, DELETE ON rdl.tasks FROM PUBLIC;
REVOKE INSERT, UPDATE, DELETE ON rdl.models FROM PUBLIC;
REVOKE USAGE ON SEQUENCE rdl.models_id_seq FROM PUBLIC;

CREATE TABLE rdl.task_grants (
    task       text NOT NULL REFERENCES rdl.tasks (name) ON DELETE CASCADE,
    grantee    regrole NOT NULL,
    granted_by regrole NOT NULL,
    granted_at timestamptz NOT NULL DEFAULT now(),
    PRIMARY KEY (task, grantee)
);
SELECT pg_catalog.pg_extension_config_dump('rdl.task_grants', '');
GRANT SELECT ON rdl.task_grants TO PUBLIC;

CREATE TABLE rdl.runs (
    id            bigserial PRIMARY KEY,
    task          text NOT NULL REFERENCES rdl.tasks (name) ON DELETE CASCADE,
    pid           int NOT NULL DEFAULT pg_backend_pid(),
    started_by    name NOT NULL,
    started_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    updated_at    timestamptz NOT NULL DEFAULT clock_timestamp(),
    finished_at   timestamptz,
    status        text NOT NULL DEFAULT 'running'
                  CHECK (status IN ('running', 'finished', 'cancelled', 'failed')),
    phase         text NOT NULL DEFAULT 'starting',
    epoch         int NOT NULL DEFAULT 0,
    history       jsonb NOT NULL DEFAULT '[]',
    options       jsonb NOT NULL DEFAULT '{}',
    metrics       jsonb,
    model_version int,
    message       text
);
SELECT pg_catalog.pg_extension_config_dump('rdl.runs', '');
SELECT pg_catalog.pg_extension_config_dump('rdl.runs_id_seq', '');
GRANT SELECT ON rdl.runs TO PUBLIC;

ALTER TABLE rdl.tasks ENABLE ROW LEVEL SECURITY;
CREATE POLICY usable ON rdl.tasks FOR SELECT USING (
    pg_catalog.pg_has_role(owner, 'MEMBER')
    OR EXISTS (SELECT 1 FROM rdl.task_grants g WHERE g.task = tasks.name));
ALTER TABLE rdl.task_grants ENABLE ROW LEVEL SECURITY;
CREATE POLICY visible ON rdl.task_grants FOR SELECT USING (
    grantee = 0 OR pg_catalog.pg_has_role(grantee, 'MEMBER')
    OR pg_catalog.pg_has_role(granted_by, 'MEMBER'));
ALTER TABLE rdl.models ENABLE ROW LEVEL SECURITY;
CREATE POLICY usable ON rdl.models FOR SELECT USING (
    EXISTS (SELECT 1 FROM rdl.tasks t WHERE t.name = models.task));
ALTER TABLE rdl.runs ENABLE ROW LEVEL SECURITY;
CREATE POLICY usable ON rdl.runs FOR SELECT USING (
    EXISTS (SELECT 1 FROM rdl.tasks t WHERE t.name = runs.task));

CREATE VIEW rdl_tasks WITH (security_invoker = true) AS
SELECT name,
       spec->>'task_type' AS task_type,
       spec->'entity'->>'table' AS entity_table,
       spec->'entity'->>'key_column' AS entity_key,
       query,
       cardinality(train_anchors) AS train_anchors,
       cardinality(val_anchors) AS val_anchors,
       cardinality(test_anchors) AS test_anchors,
       owner,
       created_at
FROM rdl.tasks;
GRANT SELECT ON rdl_tasks TO PUBLIC;

CREATE VIEW rdl_runs WITH (security_invoker = true) AS
SELECT r.id, r.task, r.pid, r.started_by,
       CASE WHEN r.status = 'running' AND NOT EXISTS (
                SELECT 1 FROM pg_catalog.pg_locks l
                WHERE l.locktype = 'advisory' AND l.granted AND l.pid = r.pid
                  AND l.database = (SELECT oid FROM pg_catalog.pg_database WHERE datname = current_database())
                  AND l.classid = 1919183872 AND l.objid = r.id::int8::oid AND l.objsubid = 2)
            THEN 'aborted' ELSE r.status END AS status,
       r.phase, r.epoch,
       (r.history -> -1) AS last_epoch,
       r.history, r.started_at, r.updated_at, r.finished_at,
       coalesce(r.finished_at, clock_timestamp()) - r.started_at AS elapsed,
       r.model_version, r.metrics, r.options, r.message
FROM rdl.runs r;
GRANT SELECT ON rdl_runs TO PUBLIC;

-- Changed signatures: an argument added (what-if) or a result column (the class).
DROP FUNCTION rdl_predict(text, anyelement, timestamptz);
CREATE FUNCTION "rdl_predict"(
	"task" TEXT,
	"entity_id" anyelement,
	"as_of" timestamp with time zone DEFAULT NULL,
	"assuming" jsonb DEFAULT NULL
) RETURNS double precision
LANGUAGE c
AS 'MODULE_PATHNAME', 'rdl_predict_wrapper';

DROP FUNCTION rdl_predict_batch(text, anyarray, timestamptz);
CREATE FUNCTION "rdl_predict_batch"(
	"task" TEXT,
	"entity_ids" anyarray,
	"as_of" timestamp with time zone DEFAULT NULL
) RETURNS TABLE (
	"entity_id" TEXT,
	"prediction" double precision,
	"class" TEXT
)
LANGUAGE c
AS 'MODULE_PATHNAME', 'rdl_predict_batch_wrapper';

-- New functions.
CREATE FUNCTION "rdl_explain"(
	"task" TEXT,
	"entity_id" anyelement,
	"as_of" timestamp with time zone DEFAULT NULL,
	"top_k" INT DEFAULT 5,
	"assuming" jsonb DEFAULT NULL
) RETURNS jsonb
LANGUAGE c
AS 'MODULE_PATHNAME', 'rdl_explain_wrapper';

CREATE FUNCTION "rdl_grant_task"(
	"name" TEXT,
	"role" TEXT
) RETURNS bool
STRICT
LANGUAGE c
AS 'MODULE_PATHNAME', 'rdl_grant_task_wrapper';

CREATE FUNCTION "rdl_importance"(
	"task" TEXT,
	"max_examples" INT DEFAULT 300
) RETURNS TABLE (
	"table_name" TEXT,
	"column_name" TEXT,
	"importance" double precision
)
STRICT
LANGUAGE c
AS 'MODULE_PATHNAME', 'rdl_importance_wrapper';

CREATE FUNCTION "rdl_predict_class"(
	"task" TEXT,
	"entity_id" anyelement,
	"as_of" timestamp with time zone DEFAULT NULL,
	"assuming" jsonb DEFAULT NULL
) RETURNS TEXT
LANGUAGE c
AS 'MODULE_PATHNAME', 'rdl_predict_class_wrapper';

CREATE FUNCTION "rdl_predict_detail"(
	"task" TEXT,
	"entity_id" anyelement,
	"as_of" timestamp with time zone DEFAULT NULL,
	"coverage" double precision DEFAULT 0.9,
	"assuming" jsonb DEFAULT NULL
) RETURNS jsonb
LANGUAGE c
AS 'MODULE_PATHNAME', 'rdl_predict_detail_wrapper';

CREATE FUNCTION "rdl_predict_proba"(
	"task" TEXT,
	"entity_id" anyelement,
	"as_of" timestamp with time zone DEFAULT NULL,
	"assuming" jsonb DEFAULT NULL
) RETURNS jsonb
LANGUAGE c
AS 'MODULE_PATHNAME', 'rdl_predict_proba_wrapper';

CREATE FUNCTION "rdl_recommend"(
	"task" TEXT,
	"entity_id" anyelement,
	"k" INT DEFAULT 10,
	"as_of" timestamp with time zone DEFAULT NULL,
	"exclude_owned" bool DEFAULT false
) RETURNS TABLE (
	"item_id" TEXT,
	"score" double precision,
	"rank" INT
)
LANGUAGE c
AS 'MODULE_PATHNAME', 'rdl_recommend_wrapper';

CREATE FUNCTION "rdl_recommend_prepare"(
	"task" TEXT,
	"as_of" timestamp with time zone DEFAULT NULL
) RETURNS jsonb
LANGUAGE c
AS 'MODULE_PATHNAME', 'rdl_recommend_prepare_wrapper';

CREATE FUNCTION "rdl_revoke_task"(
	"name" TEXT,
	"role" TEXT
) RETURNS bool
STRICT
LANGUAGE c
AS 'MODULE_PATHNAME', 'rdl_revoke_task_wrapper';

CREATE FUNCTION "rdl_sampler_statements"(
	"task" TEXT,
	"split" TEXT DEFAULT 'train',
	"max_seeds" INT DEFAULT NULL
) RETURNS SETOF TEXT
LANGUAGE c
AS 'MODULE_PATHNAME', 'rdl_sampler_statements_wrapper';

CREATE FUNCTION "rdl_sampler_stats"(
	"task" TEXT,
	"split" TEXT DEFAULT 'train',
	"max_seeds" INT DEFAULT NULL
) RETURNS jsonb
LANGUAGE c
AS 'MODULE_PATHNAME', 'rdl_sampler_stats_wrapper';

CREATE FUNCTION "rdl_status"() RETURNS jsonb
STRICT VOLATILE PARALLEL SAFE
LANGUAGE c
AS 'MODULE_PATHNAME', 'rdl_status_wrapper';

CREATE FUNCTION "rdl_worker_restart"() RETURNS INT
STRICT VOLATILE
LANGUAGE c
AS 'MODULE_PATHNAME', 'rdl_worker_restart_wrapper';
