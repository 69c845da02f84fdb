-- cohort.liver_patient
-- Grain: one row per patient per hospital with a primary liver cancer (ICD-10 C22.x).
-- Columns are listed with their meaning in warehouse/cohorts/cohorts.yaml.
--
-- Index date: the first liver-cancer diagnosis (ties: the one with a morphology).
-- Histology: ICD-O-3 8170-8175/3 = hcc, 8160/3 = cholangiocarcinoma, other morphology = other;
--   without morphology ICD-10 C22.0 = hcc, C22.1 = cholangiocarcinoma, else other.
-- Baseline: the result or finding nearest to the index date within +-30 days (ties: earlier).
-- Child-Pugh points (labs rounded to the precision they are reported at, so unit conversion
--   noise cannot cross a cut-off): bilirubin <34 / 34-50 / >50 umol/L; albumin >35 / 28-35 /
--   <28 g/L; INR <1.7 / 1.7-2.3 / >2.3; ascites none / mild / moderate-severe; encephalopathy
--   none / grade1-2 / grade3-4 -> 1 / 2 / 3. Score only when all five are known; class
--   A 5-6, B 7-9, C 10-15. child_pugh_class is the computed class, else the recorded one.
-- ALBI = 0.66 * log10(bilirubin umol/L) - 0.085 * albumin g/L; grade 1 <= -2.60 < 2 <= -1.39 < 3.
-- BCLC derived (bclc_derived = true) only when none is recorded, from what staging rows carry:
--   ECOG 3-4 or Child-Pugh C or CNLC IV -> D; CNLC IIIa/IIIb or ECOG 1-2 -> C;
--   CNLC IIa/IIb -> B; CNLC Ia/Ib -> A. BCLC 0 needs tumour size, which is not recorded.
-- CNLC derived (cnlc_derived = true) only when none is recorded: ECOG 3-4 or Child-Pugh C -> IV.

CREATE OR REPLACE TABLE cohort.liver_patient AS
WITH liver_dx AS (
    SELECT
        hospital, patient_id, condition_id, morphology_code,
        replace(upper(icd10_code), '.', '') AS icd10,
        TRY_CAST(left(onset_date, 10) AS DATE) AS dx_date
    FROM core.condition
    WHERE upper(icd10_code) LIKE 'C22%' AND TRY_CAST(left(onset_date, 10) AS DATE) IS NOT NULL
),
index_dx AS (
    SELECT *
    FROM liver_dx
    QUALIFY row_number() OVER (
        PARTITION BY hospital, patient_id
        ORDER BY dx_date, morphology_code IS NULL, condition_id
    ) = 1
),
lab_unit (code, unit) AS (
    VALUES ('1834-1', 'ng/mL'), ('1975-2', 'umol/L'), ('1751-7', 'g/L'), ('6301-6', '{INR}'),
        ('6301-6', '{ratio}'), ('6301-6', '1')
),
baseline_lab AS (
    SELECT d.hospital, d.patient_id, o.code, o.value_number
    FROM index_dx AS d
    JOIN cohort_observation AS o USING (hospital, patient_id)
    JOIN lab_unit AS u ON u.code = o.code AND u.unit = coalesce(o.unit, '1')
    WHERE o.value_number IS NOT NULL AND abs(date_diff('day', d.dx_date, o.obs_date)) <= 30
    QUALIFY row_number() OVER (
        PARTITION BY d.hospital, d.patient_id, o.code
        ORDER BY abs(date_diff('day', d.dx_date, o.obs_date)), o.obs_date, o.observation_id
    ) = 1
),
baseline_finding AS (
    SELECT d.hospital, d.patient_id, o.code, o.value_code, o.value_integer
    FROM index_dx AS d
    JOIN cohort_observation AS o USING (hospital, patient_id)
    WHERE (
            (o.code_system = 'urn:walnut:observation' AND o.value_code IS NOT NULL)
            OR (o.code = '89247-1' AND o.value_integer IS NOT NULL)
        )
        AND abs(date_diff('day', d.dx_date, o.obs_date)) <= 30
    QUALIFY row_number() OVER (
        PARTITION BY d.hospital, d.patient_id, o.code
        ORDER BY abs(date_diff('day', d.dx_date, o.obs_date)), o.obs_date, o.observation_id
    ) = 1
),
baseline AS (
    SELECT
        d.hospital,
        d.patient_id,
        max(l.value_number) FILTER (WHERE l.code = '1834-1') AS afp_ng_ml,
        max(l.value_number) FILTER (WHERE l.code = '1975-2') AS bilirubin_umol_l,
        max(l.value_number) FILTER (WHERE l.code = '1751-7') AS albumin_g_l,
        max(l.value_number) FILTER (WHERE l.code = '6301-6') AS inr
    FROM index_dx AS d
    LEFT JOIN baseline_lab AS l USING (hospital, patient_id)
    GROUP BY ALL
),
finding AS (
    SELECT
        d.hospital,
        d.patient_id,
        max(f.value_code) FILTER (WHERE f.code = 'bclc-stage') AS bclc_recorded,
        max(f.value_code) FILTER (WHERE f.code = 'cnlc-stage') AS cnlc_recorded,
        max(f.value_code) FILTER (WHERE f.code = 'child-pugh-class') AS child_pugh_recorded,
        max(f.value_code) FILTER (WHERE f.code = 'ascites') AS ascites,
        max(f.value_code) FILTER (WHERE f.code = 'hepatic-encephalopathy') AS encephalopathy,
        max(f.value_integer) FILTER (WHERE f.code = '89247-1') AS ecog
    FROM index_dx AS d
    LEFT JOIN baseline_finding AS f USING (hospital, patient_id)
    GROUP BY ALL
),
hepatitis AS (
    -- HBsAg LOINC 5196-1, HCV Ab LOINC 16128-1; SNOMED CT 10828004 positive, 260385009 negative
    SELECT
        hospital,
        patient_id,
        bool_or(code = '5196-1' AND value_code = '10828004') AS hbsag_positive,
        bool_or(code = '5196-1' AND value_code = '260385009') AS hbsag_negative,
        bool_or(code = '16128-1' AND value_code = '10828004') AS hcv_positive,
        bool_or(code = '16128-1' AND value_code = '260385009') AS hcv_negative
    FROM core.observation
    WHERE code IN ('5196-1', '16128-1')
    GROUP BY ALL
),
hepatitis_dx AS (
    -- ICD-10 B16/B18.0/B18.1 hepatitis B, B17.1/B18.2 hepatitis C
    SELECT
        hospital,
        patient_id,
        bool_or(regexp_matches(replace(upper(icd10_code), '.', ''), '^(B16|B180|B181)'))
            AS hbv_dx,
        bool_or(regexp_matches(replace(upper(icd10_code), '.', ''), '^(B171|B182)')) AS hcv_dx
    FROM core.condition
    WHERE icd10_code IS NOT NULL
    GROUP BY ALL
),
procedure_flag AS (
    -- SNOMED CT 63697000 hepatectomy, 447714006 RFA of liver, 708977003 TACE of liver, plus
    -- displays for hospitals that map to sibling concepts
    SELECT
        hospital,
        patient_id,
        bool_or(code = '63697000' OR regexp_matches(lower(display), 'ectomy|resection|excision'))
            AS resection,
        bool_or(code = '447714006' OR regexp_matches(lower(display), 'ablation')) AS ablation,
        bool_or(code = '708977003' OR regexp_matches(lower(display), 'chemoemboli|\btace\b'))
            AS tace
    FROM core.procedure
    GROUP BY ALL
),
lines AS (
    SELECT
        l.hospital,
        l.patient_id,
        count(*) AS systemic_lines,
        count(*) FILTER (WHERE l.start_date < d.dx_date) AS prior_systemic_lines,
        min(l.start_date) AS first_systemic_date
    FROM cohort.line_of_therapy AS l
    JOIN index_dx AS d USING (hospital, patient_id)
    GROUP BY ALL
),
scored AS (
    SELECT
        d.*,
        b.afp_ng_ml,
        b.bilirubin_umol_l,
        b.albumin_g_l,
        b.inr,
        f.bclc_recorded,
        f.cnlc_recorded,
        f.child_pugh_recorded,
        f.ascites,
        f.encephalopathy,
        f.ecog,
        CASE
            WHEN round(b.bilirubin_umol_l, 1) < 34 THEN 1
            WHEN round(b.bilirubin_umol_l, 1) <= 50 THEN 2
            WHEN b.bilirubin_umol_l IS NOT NULL THEN 3
        END AS bilirubin_points,
        CASE
            WHEN round(b.albumin_g_l, 1) > 35 THEN 1
            WHEN round(b.albumin_g_l, 1) >= 28 THEN 2
            WHEN b.albumin_g_l IS NOT NULL THEN 3
        END AS albumin_points,
        CASE
            WHEN round(b.inr, 2) < 1.7 THEN 1
            WHEN round(b.inr, 2) <= 2.3 THEN 2
            WHEN b.inr IS NOT NULL THEN 3
        END AS inr_points,
        CASE f.ascites WHEN 'none' THEN 1 WHEN 'mild' THEN 2 WHEN 'moderate-severe' THEN 3 END
            AS ascites_points,
        CASE f.encephalopathy WHEN 'none' THEN 1 WHEN 'grade1-2' THEN 2 WHEN 'grade3-4' THEN 3 END
            AS encephalopathy_points,
        CASE
            WHEN b.bilirubin_umol_l > 0 AND b.albumin_g_l IS NOT NULL
                THEN 0.66 * log10(b.bilirubin_umol_l) - 0.085 * b.albumin_g_l
        END AS albi_score
    FROM index_dx AS d
    JOIN baseline AS b USING (hospital, patient_id)
    JOIN finding AS f USING (hospital, patient_id)
),
classed AS (
    SELECT
        *,
        bilirubin_points + albumin_points + inr_points + ascites_points + encephalopathy_points
            AS child_pugh_score
    FROM scored
),
staged AS (
    SELECT
        *,
        CASE
            WHEN child_pugh_score BETWEEN 5 AND 6 THEN 'A'
            WHEN child_pugh_score BETWEEN 7 AND 9 THEN 'B'
            WHEN child_pugh_score BETWEEN 10 AND 15 THEN 'C'
        END AS child_pugh_computed
    FROM classed
),
derived AS (
    SELECT
        *,
        coalesce(child_pugh_computed, child_pugh_recorded) AS cp_class,
        CASE
            WHEN ecog BETWEEN 3 AND 4 OR coalesce(child_pugh_computed, child_pugh_recorded) = 'C'
                OR cnlc_recorded = 'IV' THEN 'D'
            WHEN cnlc_recorded IN ('IIIa', 'IIIb') OR ecog BETWEEN 1 AND 2 THEN 'C'
            WHEN cnlc_recorded IN ('IIa', 'IIb') THEN 'B'
            WHEN cnlc_recorded IN ('Ia', 'Ib') THEN 'A'
        END AS bclc_rule,
        CASE
            WHEN ecog BETWEEN 3 AND 4 OR coalesce(child_pugh_computed, child_pugh_recorded) = 'C'
                THEN 'IV'
        END AS cnlc_rule
    FROM staged
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
        WHEN regexp_matches(d.morphology_code, '^817[0-5]/3$') THEN 'hcc'
        WHEN d.morphology_code = '8160/3' THEN 'cholangiocarcinoma'
        WHEN d.morphology_code IS NOT NULL THEN 'other'
        WHEN d.icd10 = 'C220' THEN 'hcc'
        WHEN d.icd10 = 'C221' THEN 'cholangiocarcinoma'
        ELSE 'other'
    END AS histology,
    year(d.dx_date) - year(TRY_CAST(p.birth_date AS DATE))
        - CASE
            WHEN strftime(d.dx_date, '%m%d') < strftime(TRY_CAST(p.birth_date AS DATE), '%m%d')
                THEN 1 ELSE 0
        END AS age_at_index,
    p.gender AS sex,
    CASE
        WHEN h.hbsag_positive OR x.hbv_dx THEN 'positive'
        WHEN h.hbsag_negative THEN 'negative'
    END AS hbv_status,
    CASE
        WHEN h.hcv_positive OR x.hcv_dx THEN 'positive'
        WHEN h.hcv_negative THEN 'negative'
    END AS hcv_status,
    d.afp_ng_ml,
    d.bilirubin_umol_l,
    d.albumin_g_l,
    d.inr,
    d.ascites,
    d.encephalopathy,
    d.ecog,
    d.child_pugh_score,
    d.cp_class AS child_pugh_class,
    d.child_pugh_recorded AS child_pugh_class_recorded,
    d.albi_score,
    CASE
        WHEN d.albi_score <= -2.60 THEN 1
        WHEN d.albi_score <= -1.39 THEN 2
        WHEN d.albi_score IS NOT NULL THEN 3
    END AS albi_grade,
    coalesce(d.bclc_recorded, d.bclc_rule) AS bclc_stage,
    d.bclc_recorded IS NULL AND d.bclc_rule IS NOT NULL AS bclc_derived,
    coalesce(d.cnlc_recorded, d.cnlc_rule) AS cnlc_stage,
    d.cnlc_recorded IS NULL AND d.cnlc_rule IS NOT NULL AS cnlc_derived,
    coalesce(t.resection, false) AS resection,
    coalesce(t.ablation, false) AS ablation,
    coalesce(t.tace, false) AS tace,
    coalesce(l.systemic_lines, 0) > 0 AS systemic,
    coalesce(l.systemic_lines, 0) AS systemic_lines,
    coalesce(l.prior_systemic_lines, 0) AS prior_systemic_lines,
    l.first_systemic_date,
    CASE WHEN c.death_date IS NOT NULL THEN 'dead' ELSE 'alive' END AS vital_status,
    c.death_date,
    c.last_contact_date
FROM derived AS d
JOIN core.patient AS p USING (hospital, patient_id)
LEFT JOIN hepatitis AS h USING (hospital, patient_id)
LEFT JOIN hepatitis_dx AS x USING (hospital, patient_id)
LEFT JOIN procedure_flag AS t USING (hospital, patient_id)
LEFT JOIN lines AS l USING (hospital, patient_id)
LEFT JOIN cohort_contact AS c USING (hospital, patient_id)
ORDER BY d.hospital, d.patient_id;
