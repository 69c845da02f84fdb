-- Session-only helpers shared by the cohort marts (TEMP: never stored in the warehouse).
--
-- cohort_observation: core.observation with obs_date, the local calendar date. Lab specimen
--   times are UTC instants; every Walnut hospital is in Asia/Shanghai (fixed UTC+8, no DST),
--   so the local date is taken there. Staging/assessment findings carry plain dates.
-- cohort_contact: per patient, death date and the last date the patient was seen in any
--   record (encounter, observation, procedure, drug exposure). A table, not a view: two marts
--   join it, and computing it reads every observation.

CREATE OR REPLACE TEMP VIEW cohort_observation AS
SELECT
    o.*,
    CASE
        WHEN length(o.effective) > 10
            THEN timezone('Asia/Shanghai', TRY_CAST(o.effective AS TIMESTAMPTZ))::DATE
        ELSE TRY_CAST(o.effective AS DATE)
    END AS obs_date
FROM core.observation AS o;

CREATE OR REPLACE TEMP TABLE cohort_contact AS
WITH dated AS (
    SELECT hospital, patient_id, TRY_CAST(left(start_date, 10) AS DATE) AS seen
    FROM core.encounter
    UNION ALL
    SELECT hospital, patient_id, obs_date FROM cohort_observation
    UNION ALL
    SELECT hospital, patient_id, TRY_CAST(left(performed_date, 10) AS DATE) FROM core.procedure
    UNION ALL
    SELECT hospital, patient_id, TRY_CAST(left(start_date, 10) AS DATE) FROM core.medication
    UNION ALL
    SELECT hospital, patient_id, TRY_CAST(left(end_date, 10) AS DATE) FROM core.medication
),
seen AS (
    SELECT hospital, patient_id, max(seen) AS last_contact_date FROM dated GROUP BY ALL
),
dead AS (
    -- SNOMED CT 419099009 "Dead (finding)" on a vital status (LOINC 75186-7) Observation
    SELECT hospital, patient_id, min(obs_date) AS first_dead_date
    FROM cohort_observation
    WHERE code = '75186-7' AND value_code = '419099009'
    GROUP BY ALL
)
SELECT
    p.hospital,
    p.patient_id,
    coalesce(TRY_CAST(left(p.deceased_date, 10) AS DATE), d.first_dead_date) AS death_date,
    s.last_contact_date
FROM core.patient AS p
LEFT JOIN dead AS d USING (hospital, patient_id)
LEFT JOIN seen AS s USING (hospital, patient_id);
