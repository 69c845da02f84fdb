-- cohort.survival
-- Grain: one row per patient per hospital per cohort (liver, lung).
-- Time origin: the cohort's index date (first diagnosis). Event = death (event = 1, time to
-- the death date); otherwise censored (event = 0) at the last contact date. A time that would
-- be negative (last contact recorded before the index date) is 0 days.
-- stratum: what the report's Kaplan-Meier curves are split by; liver: BCLC stage
-- ('BCLC <stage>' or 'BCLC unknown'), lung: EGFR status ('EGFR <status>' or 'EGFR not tested').

CREATE OR REPLACE TABLE cohort.survival AS
WITH patients AS (
    SELECT
        'liver' AS cohort, hospital, patient_id, index_date, death_date, last_contact_date,
        'BCLC ' || coalesce(bclc_stage, 'unknown') AS stratum
    FROM cohort.liver_patient
    UNION ALL
    SELECT
        'lung', hospital, patient_id, index_date, death_date, last_contact_date,
        'EGFR ' || coalesce(egfr_status, 'not tested')
    FROM cohort.lung_patient
)
SELECT
    cohort,
    hospital,
    patient_id,
    index_date,
    (death_date IS NOT NULL)::INTEGER AS event,
    coalesce(death_date, greatest(last_contact_date, index_date), index_date) AS end_date,
    greatest(
        date_diff('day', index_date,
            coalesce(death_date, greatest(last_contact_date, index_date), index_date)),
        0
    ) AS time_days,
    stratum
FROM patients
ORDER BY cohort, hospital, patient_id;
