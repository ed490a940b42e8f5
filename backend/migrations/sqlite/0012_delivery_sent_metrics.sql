-- The metrics a sensor said each batch of a run carries (SQLite), a bit per
-- hearth.v1.Metric number (domain/src/delivery.rs, MetricSet). With them a
-- run of which nothing was stored is counted missing whole; NULL or 0: not
-- said.
ALTER TABLE delivery_runs ADD COLUMN sent_metrics INTEGER NULL;
