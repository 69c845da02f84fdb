-- cohort.lung_patient
-- Grain: one row per patient per hospital with a lung cancer (ICD-10 C34.x).
-- Columns are listed with their meaning in warehouse/cohorts/cohorts.yaml.
--
-- Index date: the first lung-cancer diagnosis (ties: the one with a morphology).
-- Histology group from ICD-O-3: 8140/3 and other adenocarcinomas 8250-8255/3, 8480-8481/3,
--   8550/3 = adenocarcinoma; 8070-8078/3 = squamous; 8041-8045/3 = small_cell; other
--   morphology = other; none recorded = unknown.
-- TNM and stage group (AJCC 8th, mCODE LOINC 21905-5/21906-3/21907-1/21908-9): nearest to the
--   index date within +-30 days; the c/p prefix is dropped, stage groups are written in Roman
--   numerals (3B -> IIIB).
-- Biomarkers: Observations with the gene's LOINC code (EGFR 21665-5, ALK 100019-9, ROS1
--   102038-7, KRAS 21702-6, PD-L1 TPS 83053-9/85147-7), or whose code or display names the
--   gene, so local-only codes are found too. Result text is taken
--   from value_code, else value_display. EGFR status is the sensitising mutation if any test
--   found one (exon19del before L858R), else T790M, else negative; egfr_t790m flags an
--   acquired T790M at any time. PD-L1 TPS: the earliest test; bands <1%, 1-49%, >=50%.
-- ECOG (LOINC 89247-1): nearest to the index date within +-30 days.
-- Smoking status (LOINC 72166-2, SNOMED CT 266919005 never, 8517006 former, 77176002 current):
--   the latest record; null where the hospital sends none.

CREATE OR REPLACE TABLE cohort.lung_patient AS
WITH lung_dx AS (
    SELECT
        hospital, patient_id, condition_id, morphology_code,
        replace(upper(icd10_code), '.', '') AS icd10,
        TRY_CAST(left(onset_date, 10) AS DATE) AS dx_date
    FROM core.condition
    WHERE upper(icd10_code) LIKE 'C34%' AND TRY_CAST(left(onset_date, 10) AS DATE) IS NOT NULL
),
index_dx AS (
    SELECT *
    FROM lung_dx
    QUALIFY row_number() OVER (
        PARTITION BY hospital, patient_id
        ORDER BY dx_date, morphology_code IS NULL, condition_id
    ) = 1
),
staging AS (
    SELECT d.hospital, d.patient_id, o.code, o.value_code, o.value_integer
    FROM index_dx AS d
    JOIN cohort_observation AS o USING (hospital, patient_id)
    WHERE o.code IN ('21905-5', '21906-3', '21907-1', '21908-9', '89247-1')
        AND coalesce(o.value_code, o.value_integer::VARCHAR) IS NOT NULL
        AND abs(date_diff('day', d.dx_date, o.obs_date)) <= 30
    QUALIFY row_number() OVER (
        PARTITION BY d.hospital, d.patient_id, o.code
        ORDER BY abs(date_diff('day', d.dx_date, o.obs_date)), o.obs_date, o.observation_id
    ) = 1
),
staged AS (
    SELECT
        d.hospital,
        d.patient_id,
        max(regexp_replace(s.value_code, '^y?[cp]', '')) FILTER (WHERE s.code = '21905-5')
            AS tnm_t,
        max(regexp_replace(s.value_code, '^y?[cp]', '')) FILTER (WHERE s.code = '21906-3')
            AS tnm_n,
        max(regexp_replace(s.value_code, '^y?[cp]', '')) FILTER (WHERE s.code = '21907-1')
            AS tnm_m,
        max(upper(s.value_code)) FILTER (WHERE s.code = '21908-9') AS stage_code,
        max(s.value_integer) FILTER (WHERE s.code = '89247-1') AS ecog
    FROM index_dx AS d
    LEFT JOIN staging AS s USING (hospital, patient_id)
    GROUP BY ALL
),
marker_gene AS MATERIALIZED (
    -- The gene a (code, display) pair names, decided once per distinct pair: the regexes
    -- below cost ~1 s when run on every observation row, and labs repeat a few dozen pairs.
    SELECT
        code,
        display,
        CASE
            -- LOINC codes the hospital mappings use (mappings/*/codes/biomarker.csv)
            WHEN code = '21665-5' THEN 'EGFR'
            WHEN code = '100019-9' THEN 'ALK'
            WHEN code = '102038-7' THEN 'ROS1'
            WHEN code = '21702-6' THEN 'KRAS'
            WHEN code IN ('83053-9', '85147-7') THEN 'PD-L1'
            WHEN regexp_matches(upper(coalesce(code, '') || ' ' || coalesce(display, '')),
                '(^|[^A-Z0-9])EGFR([^A-Z0-9]|$)') THEN 'EGFR'
            WHEN regexp_matches(coalesce(code, '') || ' ' || coalesce(display, ''),
                '(^|[^A-Za-z0-9])ALK([^A-Za-z0-9]|$)') THEN 'ALK'
            WHEN regexp_matches(upper(coalesce(code, '') || ' ' || coalesce(display, '')),
                'ROS1|ROS PROTO-ONCOGENE 1') THEN 'ROS1'
            WHEN regexp_matches(upper(coalesce(code, '') || ' ' || coalesce(display, '')),
                'KRAS') THEN 'KRAS'
            WHEN regexp_matches(upper(coalesce(code, '') || ' ' || coalesce(display, '')),
                'PD-?L1|CD274|PROGRAMMED CELL DEATH LIGAND 1') THEN 'PD-L1'
        END AS gene
    FROM (SELECT DISTINCT code, display FROM core.observation)
),
marker AS (
    SELECT
        o.hospital,
        o.patient_id,
        o.obs_date,
        o.observation_id,
        o.value_number,
        g.gene,
        lower(coalesce(o.value_code, o.value_display, '')) AS result_text
    FROM cohort_observation AS o
    JOIN marker_gene AS g
        ON o.code IS NOT DISTINCT FROM g.code AND o.display IS NOT DISTINCT FROM g.display
    WHERE o.category IS DISTINCT FROM 'survey' AND g.gene IS NOT NULL
),
marker_result AS (
    SELECT
        *,
        CASE
            WHEN regexp_matches(result_text, 'exon ?19|19 ?del|ex19') THEN 'exon19del'
            WHEN result_text LIKE '%l858r%' THEN 'L858R'
            WHEN result_text LIKE '%t790m%' THEN 'T790M'
            WHEN result_text LIKE '%g12c%' THEN 'G12C'
            WHEN result_text = '260385009' OR regexp_matches(result_text, 'negative|not detected')
                THEN 'negative'
            WHEN result_text = '10828004' OR regexp_matches(result_text, 'positive|detected')
                THEN 'positive'
        END AS result
    FROM marker
),
biomarker AS (
    SELECT
        hospital,
        patient_id,
        CASE
            WHEN bool_or(gene = 'EGFR' AND result = 'exon19del') THEN 'exon19del'
            WHEN bool_or(gene = 'EGFR' AND result = 'L858R') THEN 'L858R'
            WHEN bool_or(gene = 'EGFR' AND result = 'T790M') THEN 'T790M'
            WHEN bool_or(gene = 'EGFR' AND result = 'negative') THEN 'negative'
        END AS egfr_status,
        bool_or(gene = 'EGFR' AND result = 'T790M') AS egfr_t790m,
        CASE
            WHEN bool_or(gene = 'ALK' AND result = 'positive') THEN 'positive'
            WHEN bool_or(gene = 'ALK' AND result = 'negative') THEN 'negative'
        END AS alk_status,
        CASE
            WHEN bool_or(gene = 'ROS1' AND result = 'positive') THEN 'positive'
            WHEN bool_or(gene = 'ROS1' AND result = 'negative') THEN 'negative'
        END AS ros1_status,
        CASE
            WHEN bool_or(gene = 'KRAS' AND result = 'G12C') THEN 'G12C'
            WHEN bool_or(gene = 'KRAS' AND result NOT IN ('negative', 'G12C')) THEN 'other'
            WHEN bool_or(gene = 'KRAS' AND result = 'negative') THEN 'negative'
        END AS kras_g12c_status,
        arg_min(value_number, (obs_date, observation_id))
            FILTER (WHERE gene = 'PD-L1' AND value_number IS NOT NULL) AS pdl1_tps_percent
    FROM marker_result
    GROUP BY ALL
),
smoking AS (
    SELECT
        hospital,
        patient_id,
        CASE
            WHEN value_code = '266919005' OR lower(value_display) LIKE 'never%' THEN 'never'
            WHEN value_code = '8517006' OR lower(value_display) LIKE '%former%'
                OR lower(value_display) LIKE 'ex-%' THEN 'former'
            WHEN value_code IN ('77176002', '449868002', '428041000124106')
                OR lower(value_display) LIKE '%smoker%' THEN 'current'
        END AS smoking_status
    FROM cohort_observation
    WHERE code = '72166-2'
    QUALIFY row_number() OVER (
        PARTITION BY hospital, patient_id ORDER BY obs_date DESC NULLS LAST, observation_id
    ) = 1
),
lines AS (
    SELECT
        l.hospital,
        l.patient_id,
        count(*) AS systemic_lines,
        count(*) FILTER (WHERE l.start_date < d.dx_date) AS prior_systemic_lines,
        arg_min(l.regimen, l.line_number) AS first_line_regimen
    FROM cohort.line_of_therapy AS l
    JOIN index_dx AS d USING (hospital, patient_id)
    GROUP BY ALL
)
SELECT
    d.hospital,
    d.patient_id,
    p.person_key,
    d.condition_id AS index_condition_id,
    d.dx_date AS index_date,
    d.icd10 AS icd10_code,
    d.morphology_code,
    CASE
        WHEN d.morphology_code IS NULL THEN 'unknown'
        WHEN regexp_matches(d.morphology_code, '^(8140|825[0-5]|848[01]|8550)/3$')
            THEN 'adenocarcinoma'
        WHEN regexp_matches(d.morphology_code, '^807[0-8]/3$') THEN 'squamous'
        WHEN regexp_matches(d.morphology_code, '^804[1-5]/3$') THEN 'small_cell'
        ELSE 'other'
    END AS histology,
    year(d.dx_date) - year(TRY_CAST(p.birth_date AS DATE))
        - CASE
            WHEN strftime(d.dx_date, '%m%d') < strftime(TRY_CAST(p.birth_date AS DATE), '%m%d')
                THEN 1 ELSE 0
        END AS age_at_index,
    p.gender AS sex,
    s.tnm_t,
    s.tnm_n,
    s.tnm_m,
    CASE
        WHEN s.stage_code LIKE '4%' THEN 'IV' || substr(s.stage_code, 2)
        WHEN s.stage_code LIKE '3%' THEN 'III' || substr(s.stage_code, 2)
        WHEN s.stage_code LIKE '2%' THEN 'II' || substr(s.stage_code, 2)
        WHEN s.stage_code LIKE '1%' THEN 'I' || substr(s.stage_code, 2)
        ELSE s.stage_code
    END AS stage_group,
    s.ecog,
    b.egfr_status,
    coalesce(b.egfr_t790m, false) AS egfr_t790m,
    b.alk_status,
    b.ros1_status,
    b.kras_g12c_status,
    b.pdl1_tps_percent,
    CASE
        WHEN b.pdl1_tps_percent < 1 THEN '<1%'
        WHEN b.pdl1_tps_percent < 50 THEN '1-49%'
        WHEN b.pdl1_tps_percent IS NOT NULL THEN '>=50%'
    END AS pdl1_band,
    k.smoking_status,
    coalesce(l.systemic_lines, 0) AS systemic_lines,
    coalesce(l.prior_systemic_lines, 0) AS prior_systemic_lines,
    l.first_line_regimen,
    CASE WHEN c.death_date IS NOT NULL THEN 'dead' ELSE 'alive' END AS vital_status,
    c.death_date,
    c.last_contact_date
FROM index_dx AS d
JOIN core.patient AS p USING (hospital, patient_id)
LEFT JOIN staged AS s USING (hospital, patient_id)
LEFT JOIN biomarker AS b USING (hospital, patient_id)
LEFT JOIN smoking AS k USING (hospital, patient_id)
LEFT JOIN lines AS l USING (hospital, patient_id)
LEFT JOIN cohort_contact AS c USING (hospital, patient_id)
ORDER BY d.hospital, d.patient_id;
