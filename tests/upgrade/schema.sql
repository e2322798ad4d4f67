-- A canonical description of rdl's objects in the current database, one fact per line,
-- sorted: an upgraded installation must print exactly what a fresh one prints. Column
-- order inside a table is left out (ALTER TABLE ADD COLUMN appends).
WITH rels AS (
    SELECT c.oid, c.relname, c.relkind, c.relrowsecurity, c.reloptions,
           -- NULL means the owner's default privileges: compare what they amount to.
           coalesce(c.relacl, acldefault((CASE c.relkind WHEN 'S' THEN 's' ELSE 'r' END)::"char", c.relowner)) AS relacl
    FROM pg_class c JOIN pg_namespace n ON n.oid = c.relnamespace
    WHERE n.nspname = 'rdl' OR (n.nspname = 'public' AND c.relname LIKE 'rdl\_%')
), facts AS (
    SELECT format('relation %s kind %s acl %s rls %s options %s', relname, relkind,
                  relacl::text, relrowsecurity, reloptions::text) AS f FROM rels
    UNION ALL
    SELECT format('column %s.%s %s notnull %s default %s', r.relname, a.attname,
                  format_type(a.atttypid, a.atttypmod), a.attnotnull, pg_get_expr(d.adbin, d.adrelid))
    FROM rels r JOIN pg_attribute a ON a.attrelid = r.oid AND a.attnum > 0 AND NOT a.attisdropped
    LEFT JOIN pg_attrdef d ON d.adrelid = r.oid AND d.adnum = a.attnum
    WHERE r.relkind IN ('r', 'v')
    UNION ALL
    SELECT format('constraint %s %s', r.relname, pg_get_constraintdef(co.oid))
    FROM rels r JOIN pg_constraint co ON co.conrelid = r.oid
    UNION ALL
    SELECT format('index %s', pg_get_indexdef(i.indexrelid))
    FROM rels r JOIN pg_index i ON i.indrelid = r.oid
    UNION ALL
    SELECT format('view %s %s', r.relname, pg_get_viewdef(r.oid)) FROM rels r WHERE r.relkind = 'v'
    UNION ALL
    SELECT format('policy %s.%s %s %s using %s', tablename, policyname, cmd, roles::text, qual)
    FROM pg_policies WHERE schemaname = 'rdl'
    UNION ALL
    SELECT format('function %s(%s) returns %s strict %s volatility %s parallel %s cost %s security_definer %s symbol %s acl %s',
                  p.proname, pg_get_function_arguments(p.oid), pg_get_function_result(p.oid),
                  p.proisstrict, p.provolatile, p.proparallel, p.procost, p.prosecdef, p.prosrc, p.proacl::text)
    FROM pg_proc p JOIN pg_depend d ON d.objid = p.oid AND d.classid = 'pg_proc'::regclass
    WHERE d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'rdl') AND d.deptype = 'e'
    UNION ALL
    SELECT format('member %s', pg_describe_object(d.classid, d.objid, d.objsubid))
    FROM pg_depend d
    WHERE d.refobjid = (SELECT oid FROM pg_extension WHERE extname = 'rdl') AND d.deptype = 'e'
    UNION ALL
    SELECT format('dumped %s', c::regclass)
    FROM pg_extension e, unnest(e.extconfig) c WHERE e.extname = 'rdl'
    UNION ALL
    SELECT format('schema acl %s', nspacl::text) FROM pg_namespace WHERE nspname = 'rdl'
)
SELECT f FROM facts ORDER BY f COLLATE "C";
