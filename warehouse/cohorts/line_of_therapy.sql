-- cohort.line_of_therapy
-- Grain: one row per systemic line of therapy per patient per hospital.
-- Source: core.medication (one row per systemic drug exposure).
--
-- Rules, applied to each patient's exposures in start-date order (ties by drug name):
--   1. The first exposure opens line 1; its start opens a 28-day regimen window.
--   2. A drug started within 28 days of the line's start joins the regimen (add-on).
--   3. After the window, a drug not in the regimen starts the next line (switch or late add-on).
--   4. A regimen drug restarted more than 90 days after the line's last exposure ended starts
--      the next line (re-challenge after a gap); within 90 days it continues the line.
--   A new line opens its own 28-day window. Drug name = lower-case display, else the code.
--   An exposure without an end date counts as ending on its start date.

CREATE OR REPLACE TABLE cohort.line_of_therapy AS
WITH RECURSIVE exposure AS (
    SELECT
        hospital,
        patient_id,
        lower(coalesce(display, code)) AS drug,
        TRY_CAST(left(start_date, 10) AS DATE) AS start_date,
        coalesce(
            TRY_CAST(left(end_date, 10) AS DATE), TRY_CAST(left(start_date, 10) AS DATE)
        ) AS end_date,
        row_number() OVER (
            PARTITION BY hospital, patient_id
            ORDER BY TRY_CAST(left(start_date, 10) AS DATE), lower(coalesce(display, code)),
                medication_id
        ) AS seq
    FROM core.medication
    WHERE TRY_CAST(left(start_date, 10) AS DATE) IS NOT NULL
        AND coalesce(display, code) IS NOT NULL
),
walk AS (
    SELECT
        hospital, patient_id, seq, drug, start_date, end_date,
        1 AS line_number,
        start_date AS line_start,
        [drug] AS regimen,
        end_date AS line_last
    FROM exposure
    WHERE seq = 1
    UNION ALL
    SELECT
        e.hospital, e.patient_id, e.seq, e.drug, e.start_date, e.end_date,
        w.line_number + s.new_line::INTEGER,
        CASE WHEN s.new_line THEN e.start_date ELSE w.line_start END,
        CASE
            WHEN s.new_line THEN [e.drug]
            WHEN list_contains(w.regimen, e.drug) THEN w.regimen
            ELSE list_append(w.regimen, e.drug)
        END,
        CASE WHEN s.new_line THEN e.end_date ELSE greatest(w.line_last, e.end_date) END
    FROM walk AS w
    JOIN exposure AS e
        ON e.hospital = w.hospital AND e.patient_id = w.patient_id AND e.seq = w.seq + 1
    CROSS JOIN LATERAL (
        SELECT
            e.start_date > w.line_start + INTERVAL 28 DAY
            AND (
                NOT list_contains(w.regimen, e.drug)
                OR e.start_date > w.line_last + INTERVAL 90 DAY
            ) AS new_line
    ) AS s
)
SELECT
    hospital,
    patient_id,
    line_number,
    min(start_date) AS start_date,
    max(end_date) AS end_date,
    string_agg(DISTINCT drug, ' + ' ORDER BY drug) AS regimen,
    count(DISTINCT drug) AS drug_count,
    count(*) AS exposure_count
FROM walk
GROUP BY hospital, patient_id, line_number
ORDER BY hospital, patient_id, line_number;
