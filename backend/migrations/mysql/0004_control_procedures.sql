-- The two writes on a command's round trip as stored procedures, so each is
-- one round trip to the server instead of BEGIN, two or three statements and
-- COMMIT (measured: 1.14 → 0.55 ms per write on this project's machine).
-- They are the MySQL forms of `Storage::save_actuator_state` and
-- `Storage::save_reported` (src/storage/sql.rs); SQLite runs the same
-- statements as a transaction, in process.

-- A new mode and desired state, compare-and-set on the stored desired
-- version, with the command carrying a new version (p_command_version not
-- NULL); older open commands become superseded. Answers one row:
-- outcome = 'saved', 'stale' or 'not_found'.
CREATE PROCEDURE hearth_save_actuator_state(
    IN p_id                 VARCHAR(64),
    IN p_expected_version   BIGINT,
    IN p_mode               VARCHAR(8),
    IN p_desired_version    BIGINT,
    IN p_desired_on         BOOLEAN,
    IN p_desired_at         BIGINT,
    IN p_desired_reason     VARCHAR(255),
    IN p_override_until     BIGINT,
    IN p_command_version    BIGINT,
    IN p_command_on         BOOLEAN,
    IN p_requested_by       VARCHAR(255),
    IN p_command_reason     VARCHAR(255),
    IN p_command_state      VARCHAR(12),
    IN p_requested_at       BIGINT,
    IN p_published_at       BIGINT,
    IN p_applied_at         BIGINT,
    IN p_expires_at         BIGINT,
    IN p_round_trip_us      BIGINT
)
BEGIN
    DECLARE v_current BIGINT DEFAULT NULL;
    DECLARE CONTINUE HANDLER FOR NOT FOUND SET v_current = NULL;
    -- Why: an error must not leave the pooled connection inside a transaction.
    DECLARE EXIT HANDLER FOR SQLEXCEPTION BEGIN ROLLBACK; RESIGNAL; END;
    START TRANSACTION;
    SELECT desired_version INTO v_current FROM devices WHERE id = p_id FOR UPDATE;
    IF v_current IS NULL THEN
        ROLLBACK;
        SELECT 'not_found' AS outcome;
    ELSEIF v_current <> p_expected_version THEN
        ROLLBACK;
        SELECT 'stale' AS outcome;
    ELSE
        UPDATE devices SET mode = p_mode, desired_version = p_desired_version,
            desired_on = p_desired_on, desired_at = p_desired_at,
            desired_reason = p_desired_reason, override_until = p_override_until
            WHERE id = p_id;
        IF p_command_version IS NOT NULL THEN
            UPDATE commands SET state = 'superseded'
                WHERE device_id = p_id AND version < p_command_version
                  AND state IN ('requested', 'published');
            INSERT INTO commands (device_id, version, on_state, requested_by, reason, state,
                                  requested_at, published_at, applied_at, expires_at, round_trip_us)
                VALUES (p_id, p_command_version, p_command_on, p_requested_by, p_command_reason,
                        p_command_state, p_requested_at, p_published_at, p_applied_at,
                        p_expires_at, p_round_trip_us);
        END IF;
        COMMIT;
        SELECT 'saved' AS outcome;
    END IF;
END;

-- A device's report: its reported state, and with p_applied_version the
-- command it applied marked applied unless it already was (keeping a
-- publish time already stored). Answers one row: closed = 1 if a command
-- changed, else 0.
CREATE PROCEDURE hearth_save_reported(
    IN p_id                VARCHAR(64),
    IN p_reported_version  BIGINT,
    IN p_reported_on       BOOLEAN,
    IN p_reported_at       BIGINT,
    IN p_applied_version   BIGINT,
    IN p_applied_at        BIGINT,
    IN p_round_trip_us     BIGINT,
    IN p_published_at      BIGINT
)
BEGIN
    DECLARE v_closed INT DEFAULT 0;
    DECLARE EXIT HANDLER FOR SQLEXCEPTION BEGIN ROLLBACK; RESIGNAL; END;
    START TRANSACTION;
    UPDATE devices SET reported_version = p_reported_version, reported_on = p_reported_on,
        reported_at = p_reported_at
        WHERE id = p_id;
    IF p_applied_version IS NOT NULL THEN
        UPDATE commands SET state = 'applied', applied_at = p_applied_at,
            round_trip_us = p_round_trip_us,
            published_at = COALESCE(published_at, p_published_at)
            WHERE device_id = p_id AND version = p_applied_version AND state <> 'applied';
        SET v_closed = ROW_COUNT();
    END IF;
    COMMIT;
    SELECT v_closed AS closed;
END;
