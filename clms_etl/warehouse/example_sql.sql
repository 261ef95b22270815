-- Example queries for analysts. Each runs unchanged on DuckDB and PostgreSQL, and only needs
-- the analytics schema (what the analyst role can read). The test suite runs every one of them
-- against the demo warehouse (tests/warehouse/test_docs.py).
--
-- Format: a block starts with "-- name: <identifier>", then "-- " description lines, then the SQL.

-- name: table1_by_centre
-- Table 1 at a glance: patients, share of men, median age at diagnosis per centre.
SELECT centre,
       COUNT(*) AS patients,
       AVG(CASE WHEN sex = 'male' THEN 1.0 ELSE 0.0 END) AS share_men,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY age_at_diagnosis_years) AS median_age
FROM analytics.patient_summary
GROUP BY centre
ORDER BY centre;

-- name: grade_distribution
-- FNCLCC grade as analysed (recorded, else recomputed), with the not-specified count.
SELECT COALESCE(grade_label, 'not specified') AS grade, COUNT(*) AS patients
FROM analytics.patient_summary
GROUP BY COALESCE(grade_label, 'not specified')
ORDER BY grade;

-- name: overall_survival_input
-- Kaplan-Meier / Cox input for overall survival in the study's survival population (follow-up >= 3 months).
SELECT patient_id, time_months, event
FROM analytics.survival
WHERE endpoint = 'OS' AND in_survival_population
ORDER BY patient_id;

-- name: events_per_endpoint
-- Number of patients analysed and of events for each endpoint.
SELECT endpoint, COUNT(*) AS patients, SUM(event) AS events,
       percentile_cont(0.5) WITHIN GROUP (ORDER BY time_months) AS median_observed_months
FROM analytics.survival
WHERE in_survival_population
GROUP BY endpoint
ORDER BY endpoint;

-- name: relapse_by_grade
-- Crude relapse (local recurrence or metastasis) proportion by grade I vs II/III (the study's Table 2 variable).
SELECT CASE WHEN grade_ii_iii THEN 'II/III' ELSE 'I' END AS grade_group,
       COUNT(*) AS patients,
       SUM(CASE WHEN relapse THEN 1 ELSE 0 END) AS relapses
FROM analytics.patient_summary
WHERE grade_ii_iii IS NOT NULL AND in_survival_population
GROUP BY CASE WHEN grade_ii_iii THEN 'II/III' ELSE 'I' END
ORDER BY grade_group;

-- name: clinical_margin_by_relapse
-- Mean clinical margin of the primary excision, relapsing vs non-relapsing patients.
SELECT relapse, COUNT(clinical_margin_cm) AS patients_with_margin, AVG(clinical_margin_cm) AS mean_clinical_margin_cm
FROM analytics.patient_summary
GROUP BY relapse
ORDER BY relapse;

-- name: size_classes
-- Tumour size classes of the study (<1, 1-2.9, >=3 cm).
SELECT COALESCE(size_class, 'not specified') AS size_class, COUNT(*) AS patients
FROM analytics.patient_summary
GROUP BY COALESCE(size_class, 'not specified')
ORDER BY size_class;

-- name: recurrent_gene_alterations
-- Cases with each copy-number alteration of the pinned genes, and biallelic inactivations.
SELECT gene, cn_event, COUNT(DISTINCT case_no) AS cases,
       SUM(CASE WHEN biallelic_inactivation THEN 1 ELSE 0 END) AS biallelic
FROM analytics.gene_profile
WHERE cn_event IS NOT NULL AND cn_event <> 'neutral'
GROUP BY gene, cn_event
ORDER BY gene, cn_event;

-- name: delivery_freshness
-- Which delivery of each source is loaded, and how many rows were held back.
SELECT centre, delivery_date, SUM(rows_accepted) AS rows_accepted, SUM(rows_quarantined) AS rows_quarantined
FROM analytics.delivery_status
GROUP BY centre, delivery_date
ORDER BY centre;

-- name: data_quality_by_centre
-- Open data queries per centre and severity (counts only).
SELECT centre, severity, SUM(n_queries) AS queries
FROM analytics.query_summary
GROUP BY centre, severity
ORDER BY centre, severity;
