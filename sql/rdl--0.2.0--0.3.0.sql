-- rdl 0.2.0 → 0.3.0 (ALTER EXTENSION rdl UPDATE TO '0.3.0').
-- Security: every name in rdl's own objects is schema-qualified; model weights and configs
-- are no longer readable by ordinary roles (a grantee gets predictions, not the model);
-- tasks can be handed to another owner. Stored task specs are compiled again from their
-- query when first used (no stored SQL is ever run): nothing to do here for them.

\echo Use "ALTER EXTENSION rdl UPDATE TO '0.3.0'" to load this file. \quit

-- Weights and config hold what the owner's view of the data taught the model: column
-- statistics, category values. Readable by the extension's owner only.
REVOKE SELECT ON rdl.models FROM PUBLIC;
GRANT SELECT (id, task, version, created_at, metrics, train_seconds, data_snapshot, active)
    ON rdl.models TO PUBLIC;

-- Policies and views, their names qualified (CVE-2018-1058).
DROP POLICY usable ON rdl.tasks;
CREATE POLICY usable ON rdl.tasks FOR SELECT USING (
    pg_catalog.pg_has_role(owner, 'MEMBER')
    OR EXISTS (SELECT 1 FROM rdl.task_grants g WHERE g.task OPERATOR(pg_catalog.=) tasks.name));
DROP POLICY visible ON rdl.task_grants;
CREATE POLICY visible ON rdl.task_grants FOR SELECT USING (
    grantee::pg_catalog.oid OPERATOR(pg_catalog.=) 0::pg_catalog.oid
    OR pg_catalog.pg_has_role(grantee, 'MEMBER')
    OR pg_catalog.pg_has_role(granted_by, 'MEMBER'));
DROP POLICY usable ON rdl.models;
CREATE POLICY usable ON rdl.models FOR SELECT USING (
    EXISTS (SELECT 1 FROM rdl.tasks t WHERE t.name OPERATOR(pg_catalog.=) models.task));
DROP POLICY usable ON rdl.runs;
CREATE POLICY usable ON rdl.runs FOR SELECT USING (
    EXISTS (SELECT 1 FROM rdl.tasks t WHERE t.name OPERATOR(pg_catalog.=) runs.task));

CREATE OR REPLACE VIEW rdl_tasks WITH (security_invoker = true) AS
SELECT name,
       spec OPERATOR(pg_catalog.->>) 'task_type' AS task_type,
       (spec OPERATOR(pg_catalog.->) 'entity') OPERATOR(pg_catalog.->>) 'table' AS entity_table,
       (spec OPERATOR(pg_catalog.->) 'entity') OPERATOR(pg_catalog.->>) 'key_column' AS entity_key,
       query,
       pg_catalog.cardinality(train_anchors) AS train_anchors,
       pg_catalog.cardinality(val_anchors) AS val_anchors,
       pg_catalog.cardinality(test_anchors) AS test_anchors,
       owner,
       created_at
FROM rdl.tasks;

CREATE OR REPLACE VIEW rdl_runs WITH (security_invoker = true) AS
SELECT r.id, r.task, r.pid, r.started_by,
       CASE WHEN r.status OPERATOR(pg_catalog.=) 'running' AND NOT EXISTS (
                SELECT 1 FROM pg_catalog.pg_locks l
                WHERE l.locktype OPERATOR(pg_catalog.=) 'advisory' AND l.granted
                  AND l.pid OPERATOR(pg_catalog.=) r.pid
                  AND l.database OPERATOR(pg_catalog.=) (SELECT d.oid FROM pg_catalog.pg_database d
                                     WHERE d.datname OPERATOR(pg_catalog.=) pg_catalog.current_database())
                  AND l.classid OPERATOR(pg_catalog.=) 1919183872::pg_catalog.oid
                  AND l.objid OPERATOR(pg_catalog.=) r.id::pg_catalog.oid
                  AND l.objsubid OPERATOR(pg_catalog.=) 2)
            THEN 'aborted' ELSE r.status END AS status,
       r.phase, r.epoch,
       (r.history OPERATOR(pg_catalog.->) -1) AS last_epoch,
       r.history, r.started_at, r.updated_at, r.finished_at,
       COALESCE(r.finished_at, pg_catalog.clock_timestamp()) OPERATOR(pg_catalog.-) r.started_at AS elapsed,
       r.model_version, r.metrics, r.options, r.message
FROM rdl.runs r;

-- New functions.
CREATE FUNCTION "rdl_set_task_owner"(
	"name" TEXT,
	"role" TEXT
) RETURNS bool
STRICT
LANGUAGE c
AS 'MODULE_PATHNAME', 'rdl_set_task_owner_wrapper';
