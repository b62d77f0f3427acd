-- =============================================================================
-- ledgerline billing: schema, views and reporting queries (PostgreSQL 15)
-- =============================================================================
--
-- Migration 0042. Creates the subscription billing tables used by the
-- invoicing worker and the finance dashboards, plus the reporting views
-- consumed by the monthly revenue export.
--
-- Conventions:
--   * All money is stored as integer minor units (cents) with a currency code.
--   * All timestamps are timestamptz; reporting buckets use UTC months.
--   * Soft deletes via deleted_at; views must filter them out.
-- =============================================================================

BEGIN;

CREATE SCHEMA IF NOT EXISTS billing;
SET search_path = billing, public;

-- -----------------------------------------------------------------------------
-- Reference data
-- -----------------------------------------------------------------------------

CREATE TABLE currencies (
    code            char(3) PRIMARY KEY,
    minor_units     smallint NOT NULL DEFAULT 2,
    display_name    text NOT NULL
);

INSERT INTO currencies (code, minor_units, display_name) VALUES
    ('USD', 2, 'US Dollar'),
    ('EUR', 2, 'Euro'),
    ('GBP', 2, 'Pound Sterling'),
    ('JPY', 0, 'Yen');

CREATE TABLE fx_rates (
    currency        char(3) NOT NULL REFERENCES currencies(code),
    rate_date       date NOT NULL,
    usd_per_unit    numeric(18, 8) NOT NULL CHECK (usd_per_unit > 0),
    PRIMARY KEY (currency, rate_date)
);

CREATE TABLE plans (
    plan_id         serial PRIMARY KEY,
    code            text NOT NULL UNIQUE,
    name            text NOT NULL,
    interval_unit   text NOT NULL CHECK (interval_unit IN ('month', 'year')),
    interval_count  smallint NOT NULL DEFAULT 1 CHECK (interval_count > 0),
    trial_days      smallint NOT NULL DEFAULT 0,
    is_active       boolean NOT NULL DEFAULT true,
    created_at      timestamptz NOT NULL DEFAULT now()
);

CREATE TABLE plan_prices (
    plan_id         int NOT NULL REFERENCES plans(plan_id),
    currency        char(3) NOT NULL REFERENCES currencies(code),
    unit_amount     bigint NOT NULL CHECK (unit_amount >= 0),
    valid_from      timestamptz NOT NULL,
    valid_to        timestamptz,
    PRIMARY KEY (plan_id, currency, valid_from)
);

-- -----------------------------------------------------------------------------
-- Customers and subscriptions
-- -----------------------------------------------------------------------------

CREATE TABLE customers (
    customer_id     bigserial PRIMARY KEY,
    external_ref    text UNIQUE,
    display_name    text NOT NULL,
    email           text NOT NULL,
    country_code    char(2),
    currency        char(3) NOT NULL REFERENCES currencies(code),
    tax_exempt      boolean NOT NULL DEFAULT false,
    created_at      timestamptz NOT NULL DEFAULT now(),
    deleted_at      timestamptz
);

CREATE INDEX customers_email_idx ON customers (lower(email));

CREATE TYPE subscription_status AS ENUM (
    'trialing', 'active', 'past_due', 'paused', 'canceled'
);

CREATE TABLE subscriptions (
    subscription_id bigserial PRIMARY KEY,
    customer_id     bigint NOT NULL REFERENCES customers(customer_id),
    plan_id         int NOT NULL REFERENCES plans(plan_id),
    status          subscription_status NOT NULL,
    quantity        int NOT NULL DEFAULT 1 CHECK (quantity > 0),
    started_at      timestamptz NOT NULL,
    trial_ends_at   timestamptz,
    current_period_start timestamptz NOT NULL,
    current_period_end   timestamptz NOT NULL,
    cancel_at_period_end boolean NOT NULL DEFAULT false,
    canceled_at     timestamptz,
    discount_pct    numeric(5, 2) DEFAULT 0 CHECK (discount_pct BETWEEN 0 AND 100),
    created_at      timestamptz NOT NULL DEFAULT now(),
    CHECK (current_period_end > current_period_start)
);

CREATE INDEX subscriptions_customer_idx ON subscriptions (customer_id);
CREATE INDEX subscriptions_status_idx ON subscriptions (status);

-- History of plan/quantity changes, written by trigger below.
CREATE TABLE subscription_events (
    event_id        bigserial PRIMARY KEY,
    subscription_id bigint NOT NULL REFERENCES subscriptions(subscription_id),
    event_type      text NOT NULL,
    old_plan_id     int,
    new_plan_id     int,
    old_quantity    int,
    new_quantity    int,
    old_status      subscription_status,
    new_status      subscription_status,
    occurred_at     timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX subscription_events_sub_idx ON subscription_events (subscription_id, occurred_at);

-- -----------------------------------------------------------------------------
-- Invoices and payments
-- -----------------------------------------------------------------------------

CREATE TYPE invoice_status AS ENUM ('draft', 'open', 'paid', 'void', 'uncollectible');

CREATE TABLE invoices (
    invoice_id      bigserial PRIMARY KEY,
    invoice_number  text UNIQUE,
    customer_id     bigint NOT NULL REFERENCES customers(customer_id),
    subscription_id bigint REFERENCES subscriptions(subscription_id),
    currency        char(3) NOT NULL REFERENCES currencies(code),
    status          invoice_status NOT NULL DEFAULT 'draft',
    period_start    timestamptz NOT NULL,
    period_end      timestamptz NOT NULL,
    subtotal        bigint NOT NULL DEFAULT 0,
    tax_total       bigint NOT NULL DEFAULT 0,
    total           bigint GENERATED ALWAYS AS (subtotal + tax_total) STORED,
    amount_paid     bigint NOT NULL DEFAULT 0,
    issued_at       timestamptz,
    due_at          timestamptz,
    paid_at         timestamptz,
    voided_at       timestamptz
);

CREATE INDEX invoices_customer_idx ON invoices (customer_id, issued_at DESC);
CREATE INDEX invoices_open_due_idx ON invoices (due_at) WHERE status = 'open';

CREATE TABLE invoice_lines (
    line_id         bigserial PRIMARY KEY,
    invoice_id      bigint NOT NULL REFERENCES invoices(invoice_id) ON DELETE CASCADE,
    description     text NOT NULL,
    kind            text NOT NULL CHECK (kind IN ('subscription', 'proration', 'usage', 'credit', 'one_off')),
    plan_id         int REFERENCES plans(plan_id),
    quantity        numeric(18, 4) NOT NULL DEFAULT 1,
    unit_amount     bigint NOT NULL,
    amount          bigint NOT NULL,
    period_start    timestamptz,
    period_end      timestamptz
);

CREATE TABLE payments (
    payment_id      bigserial PRIMARY KEY,
    invoice_id      bigint NOT NULL REFERENCES invoices(invoice_id),
    amount          bigint NOT NULL CHECK (amount > 0),
    currency        char(3) NOT NULL,
    method          text NOT NULL,
    succeeded       boolean NOT NULL,
    failure_code    text,
    attempted_at    timestamptz NOT NULL DEFAULT now()
);

CREATE INDEX payments_invoice_idx ON payments (invoice_id);

CREATE TABLE refunds (
    refund_id       bigserial PRIMARY KEY,
    payment_id      bigint NOT NULL REFERENCES payments(payment_id),
    amount          bigint NOT NULL CHECK (amount > 0),
    reason          text,
    refunded_at     timestamptz NOT NULL DEFAULT now()
);

-- -----------------------------------------------------------------------------
-- Triggers
-- -----------------------------------------------------------------------------

CREATE OR REPLACE FUNCTION log_subscription_change() RETURNS trigger AS $$
BEGIN
    IF NEW.plan_id IS DISTINCT FROM OLD.plan_id
       OR NEW.quantity IS DISTINCT FROM OLD.quantity
       OR NEW.status IS DISTINCT FROM OLD.status THEN
        INSERT INTO subscription_events (
            subscription_id, event_type,
            old_plan_id, new_plan_id,
            old_quantity, new_quantity,
            old_status, new_status
        ) VALUES (
            NEW.subscription_id,
            CASE
                WHEN NEW.status = 'canceled' AND OLD.status <> 'canceled' THEN 'cancel'
                WHEN NEW.plan_id <> OLD.plan_id THEN 'plan_change'
                WHEN NEW.quantity <> OLD.quantity THEN 'quantity_change'
                ELSE 'status_change'
            END,
            OLD.plan_id, NEW.plan_id,
            OLD.quantity, NEW.quantity,
            OLD.status, NEW.status
        );
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER subscriptions_audit
    AFTER UPDATE ON subscriptions
    FOR EACH ROW EXECUTE FUNCTION log_subscription_change();

-- Keeps invoices.amount_paid and status in sync with payments.
CREATE OR REPLACE FUNCTION apply_payment() RETURNS trigger AS $$
DECLARE
    inv invoices%ROWTYPE;
BEGIN
    IF NOT NEW.succeeded THEN
        RETURN NEW;
    END IF;
    UPDATE invoices
       SET amount_paid = amount_paid + NEW.amount
     WHERE invoice_id = NEW.invoice_id
     RETURNING * INTO inv;

    IF inv.amount_paid >= inv.total THEN
        UPDATE invoices SET status = 'paid', paid_at = NEW.attempted_at
         WHERE invoice_id = NEW.invoice_id;
    END IF;
    RETURN NEW;
END;
$$ LANGUAGE plpgsql;

CREATE TRIGGER payments_apply
    AFTER INSERT ON payments
    FOR EACH ROW EXECUTE FUNCTION apply_payment();

-- -----------------------------------------------------------------------------
-- Helper functions
-- -----------------------------------------------------------------------------

-- Converts minor units of a currency to USD using the latest rate on or
-- before the given date.
CREATE OR REPLACE FUNCTION to_usd(amount bigint, cur char(3), on_date date)
RETURNS numeric AS $$
    SELECT CASE
        WHEN cur = 'USD' THEN amount / 100.0
        ELSE (amount / power(10, c.minor_units)) * r.usd_per_unit
    END
    FROM currencies c
    LEFT JOIN LATERAL (
        SELECT usd_per_unit FROM fx_rates
         WHERE currency = cur AND rate_date <= on_date
         ORDER BY rate_date DESC
         LIMIT 1
    ) r ON true
    WHERE c.code = cur;
$$ LANGUAGE sql STABLE;

-- Monthly-normalised price of a plan (yearly plans divided by 12).
CREATE OR REPLACE FUNCTION monthly_amount(unit_amount bigint, interval_unit text, interval_count smallint)
RETURNS numeric AS $$
    SELECT CASE interval_unit
        WHEN 'month' THEN unit_amount::numeric / interval_count
        WHEN 'year'  THEN unit_amount::numeric / (12 * interval_count)
    END;
$$ LANGUAGE sql IMMUTABLE;

-- -----------------------------------------------------------------------------
-- Reporting views
-- -----------------------------------------------------------------------------

-- Current price for each subscription, in the customer's currency.
CREATE OR REPLACE VIEW v_subscription_pricing AS
SELECT
    s.subscription_id,
    s.customer_id,
    c.currency,
    s.plan_id,
    p.code               AS plan_code,
    s.status,
    s.quantity,
    pp.unit_amount,
    monthly_amount(pp.unit_amount, p.interval_unit, p.interval_count)
        * s.quantity
        * (1 - s.discount_pct / 100)    AS mrr_minor
FROM subscriptions s
JOIN customers c    ON c.customer_id = s.customer_id
JOIN plans p        ON p.plan_id = s.plan_id
JOIN plan_prices pp ON pp.plan_id = s.plan_id
                   AND pp.currency = c.currency
                   AND pp.valid_from <= now()
                   AND (pp.valid_to IS NULL OR pp.valid_to > now());

-- Monthly recurring revenue right now, by plan, normalised to USD.
CREATE OR REPLACE VIEW v_mrr_by_plan AS
SELECT
    plan_code,
    count(*)                                              AS subscriptions,
    sum(quantity)                                         AS seats,
    round(sum(to_usd(mrr_minor::bigint, currency, current_date)), 2) AS mrr_usd
FROM v_subscription_pricing
WHERE status IN ('active', 'past_due')
GROUP BY plan_code
ORDER BY mrr_usd DESC;

-- Accounts receivable ageing buckets for open invoices.
CREATE OR REPLACE VIEW v_ar_ageing AS
SELECT
    i.customer_id,
    c.display_name,
    i.currency,
    sum(i.total - i.amount_paid) FILTER (WHERE now() - i.due_at <= interval '0 days')  AS not_due,
    sum(i.total - i.amount_paid) FILTER (WHERE now() - i.due_at BETWEEN interval '1 day' AND interval '30 days')  AS d1_30,
    sum(i.total - i.amount_paid) FILTER (WHERE now() - i.due_at BETWEEN interval '31 days' AND interval '60 days') AS d31_60,
    sum(i.total - i.amount_paid) FILTER (WHERE now() - i.due_at BETWEEN interval '61 days' AND interval '90 days') AS d61_90,
    sum(i.total - i.amount_paid) FILTER (WHERE now() - i.due_at > interval '90 days') AS d90_plus
FROM invoices i
JOIN customers c ON c.customer_id = i.customer_id
WHERE i.status = 'open'
GROUP BY i.customer_id, c.display_name, i.currency;

-- Net revenue per UTC month: paid invoice totals minus refunds.
CREATE OR REPLACE VIEW v_monthly_revenue AS
WITH paid AS (
    SELECT date_trunc('month', i.paid_at AT TIME ZONE 'UTC') AS month,
           i.currency,
           sum(i.total) AS gross
      FROM invoices i
     WHERE i.status = 'paid'
     GROUP BY 1, 2
),
refunded AS (
    SELECT date_trunc('month', r.refunded_at AT TIME ZONE 'UTC') AS month,
           p.currency,
           sum(r.amount) AS refunds
      FROM refunds r
      JOIN payments p ON p.payment_id = r.payment_id
     GROUP BY 1, 2
)
SELECT
    p.month,
    p.currency,
    p.gross,
    coalesce(r.refunds, 0)               AS refunds,
    p.gross - coalesce(r.refunds, 0)     AS net
FROM paid p
LEFT JOIN refunded r ON r.month = p.month AND r.currency = p.currency;

COMMIT;

-- =============================================================================
-- Ad-hoc reporting queries (saved in the finance query library)
-- =============================================================================

-- Q1: Customer churn by month. A customer churns in the month their last
-- non-canceled subscription is canceled.
WITH cancels AS (
    SELECT s.customer_id,
           max(s.canceled_at) AS last_cancel
      FROM subscriptions s
     GROUP BY s.customer_id
    HAVING bool_and(s.status = 'canceled')
),
starts AS (
    SELECT date_trunc('month', gs)::date AS month
      FROM generate_series(date '2024-01-01', current_date, interval '1 month') gs
),
active_at_start AS (
    SELECT st.month, count(DISTINCT s.customer_id) AS customers
      FROM starts st
      JOIN subscriptions s
        ON s.started_at < st.month
       AND (s.canceled_at IS NULL OR s.canceled_at >= st.month)
     GROUP BY st.month
)
SELECT a.month,
       a.customers                                          AS active_at_start,
       count(c.customer_id)                                 AS churned,
       round(100.0 * count(c.customer_id) / a.customers, 2) AS churn_pct
  FROM active_at_start a
  LEFT JOIN cancels c
    ON date_trunc('month', c.last_cancel) = a.month
 GROUP BY a.month, a.customers
 ORDER BY a.month;

-- Q2: MRR movement (new, expansion, contraction, churn) for one month.
-- :month is bound by the dashboard, e.g. '2025-03-01'.
WITH bounds AS (
    SELECT :month::timestamptz AS m_start,
           (:month::timestamptz + interval '1 month') AS m_end
),
ev AS (
    SELECT e.*, p_old.code AS old_code, p_new.code AS new_code
      FROM subscription_events e
      LEFT JOIN plans p_old ON p_old.plan_id = e.old_plan_id
      LEFT JOIN plans p_new ON p_new.plan_id = e.new_plan_id
     CROSS JOIN bounds b
     WHERE e.occurred_at >= b.m_start AND e.occurred_at < b.m_end
),
priced AS (
    SELECT ev.subscription_id,
           ev.event_type,
           coalesce(monthly_amount(pp_old.unit_amount, po.interval_unit, po.interval_count) * ev.old_quantity, 0) AS old_mrr,
           coalesce(monthly_amount(pp_new.unit_amount, pn.interval_unit, pn.interval_count) * ev.new_quantity, 0) AS new_mrr
      FROM ev
      JOIN subscriptions s ON s.subscription_id = ev.subscription_id
      JOIN customers c     ON c.customer_id = s.customer_id
      LEFT JOIN plans po   ON po.plan_id = ev.old_plan_id
      LEFT JOIN plans pn   ON pn.plan_id = ev.new_plan_id
      LEFT JOIN plan_prices pp_old ON pp_old.plan_id = ev.old_plan_id AND pp_old.currency = c.currency AND pp_old.valid_to IS NULL
      LEFT JOIN plan_prices pp_new ON pp_new.plan_id = ev.new_plan_id AND pp_new.currency = c.currency AND pp_new.valid_to IS NULL
)
SELECT
    sum(new_mrr) FILTER (WHERE event_type = 'status_change' AND old_mrr = 0) AS new_mrr,
    sum(new_mrr - old_mrr) FILTER (WHERE new_mrr > old_mrr AND old_mrr > 0)  AS expansion,
    sum(old_mrr - new_mrr) FILTER (WHERE new_mrr < old_mrr AND event_type <> 'cancel') AS contraction,
    sum(old_mrr) FILTER (WHERE event_type = 'cancel')                        AS churned_mrr
FROM priced;

-- Q3: Top 20 customers by lifetime value in USD.
SELECT c.customer_id,
       c.display_name,
       c.email,
       round(sum(to_usd(p.amount, p.currency, p.attempted_at::date)), 2) AS ltv_usd,
       min(p.attempted_at)::date AS first_payment,
       max(p.attempted_at)::date AS last_payment
  FROM customers c
  JOIN invoices i ON i.customer_id = c.customer_id
  JOIN payments p ON p.invoice_id = i.invoice_id
 WHERE p.succeeded
 GROUP BY c.customer_id, c.display_name, c.email
 ORDER BY ltv_usd DESC
 LIMIT 20;

-- Q4: Failed payment recovery rate. For each invoice with at least one
-- failed attempt, was it eventually paid, and after how many attempts?
WITH attempts AS (
    SELECT p.invoice_id,
           count(*)                               AS attempts,
           count(*) FILTER (WHERE NOT p.succeeded) AS failures,
           bool_or(p.succeeded)                   AS recovered,
           min(p.attempted_at)                    AS first_attempt,
           max(p.attempted_at) FILTER (WHERE p.succeeded) AS recovered_at
      FROM payments p
     GROUP BY p.invoice_id
    HAVING count(*) FILTER (WHERE NOT p.succeeded) > 0
)
SELECT date_trunc('month', first_attempt)::date         AS cohort,
       count(*)                                         AS invoices_with_failure,
       count(*) FILTER (WHERE recovered)                AS recovered,
       round(100.0 * count(*) FILTER (WHERE recovered) / count(*), 1) AS recovery_pct,
       avg(attempts) FILTER (WHERE recovered)           AS avg_attempts_to_recover,
       avg(recovered_at - first_attempt) FILTER (WHERE recovered) AS avg_time_to_recover
  FROM attempts
 GROUP BY 1
 ORDER BY 1;

-- Q5: Invoices where line items do not add up to the subtotal (data quality).
SELECT i.invoice_id,
       i.invoice_number,
       i.subtotal,
       sum(l.amount) AS lines_sum,
       i.subtotal - sum(l.amount) AS diff
  FROM invoices i
  LEFT JOIN invoice_lines l ON l.invoice_id = i.invoice_id
 WHERE i.status <> 'void'
 GROUP BY i.invoice_id, i.invoice_number, i.subtotal
HAVING i.subtotal <> sum(l.amount);

-- Q6: Customers search used by the support tool. The application builds
-- this string by concatenating the search box contents.
-- SELECT customer_id, display_name, email FROM customers
--  WHERE display_name ILIKE '%' || '<search text>' || '%'
--     OR email = '<search text>'
--  ORDER BY display_name LIMIT 50;

-- Q7: Trial conversion by plan for trials that ended in the last 90 days.
SELECT p.code,
       count(*)                                          AS trials_ended,
       count(*) FILTER (WHERE s.status IN ('active', 'past_due'))  AS converted,
       round(100.0 * count(*) FILTER (WHERE s.status IN ('active', 'past_due')) / nullif(count(*), 0), 1) AS conversion_pct
  FROM subscriptions s
  JOIN plans p ON p.plan_id = s.plan_id
 WHERE s.trial_ends_at IS NOT NULL
   AND s.trial_ends_at BETWEEN now() - interval '90 days' AND now()
 GROUP BY p.code
 ORDER BY conversion_pct DESC NULLS LAST;

-- Q8: Revenue recognised per month for annual plans (straight-line over the
-- service period), to reconcile with v_monthly_revenue which is cash-based.
WITH annual_lines AS (
    SELECT l.invoice_id,
           i.currency,
           l.amount,
           l.period_start,
           l.period_end
      FROM invoice_lines l
      JOIN invoices i ON i.invoice_id = l.invoice_id
      JOIN plans p    ON p.plan_id = l.plan_id
     WHERE p.interval_unit = 'year'
       AND i.status = 'paid'
       AND l.kind = 'subscription'
),
months AS (
    SELECT al.*,
           generate_series(date_trunc('month', al.period_start),
                           date_trunc('month', al.period_end - interval '1 second'),
                           interval '1 month') AS month
      FROM annual_lines al
)
SELECT month::date,
       currency,
       sum(amount / 12) AS recognised_minor
  FROM months
 GROUP BY 1, 2
 ORDER BY 1, 2;

-- Q9: Dunning list: open invoices more than 14 days overdue, with the most
-- recent failure reason, for customers who are not tax exempt test accounts.
SELECT i.invoice_id,
       i.invoice_number,
       c.display_name,
       c.email,
       i.total - i.amount_paid                  AS outstanding,
       i.currency,
       i.due_at::date                           AS due_date,
       (now()::date - i.due_at::date)           AS days_overdue,
       lf.failure_code                          AS last_failure
  FROM invoices i
  JOIN customers c ON c.customer_id = i.customer_id
  LEFT JOIN LATERAL (
        SELECT p.failure_code
          FROM payments p
         WHERE p.invoice_id = i.invoice_id AND NOT p.succeeded
         ORDER BY p.attempted_at DESC
         LIMIT 1
  ) lf ON true
 WHERE i.status = 'open'
   AND i.due_at < now() - interval '14 days'
   AND c.email NOT LIKE '%@example.com'
 ORDER BY days_overdue DESC, outstanding DESC;

-- Q10: Seat utilisation per plan vs. last quarter.
SELECT cur.plan_code,
       cur.seats                                  AS seats_now,
       prev.seats                                 AS seats_prev_quarter,
       cur.seats - prev.seats                     AS delta
  FROM (
        SELECT plan_code, sum(quantity) AS seats
          FROM v_subscription_pricing
         WHERE status = 'active'
         GROUP BY plan_code
       ) cur
  LEFT JOIN (
        SELECT p.code AS plan_code, sum(e.new_quantity) AS seats
          FROM subscription_events e
          JOIN plans p ON p.plan_id = e.new_plan_id
         WHERE e.occurred_at < date_trunc('quarter', now())
         GROUP BY p.code
       ) prev ON prev.plan_code = cur.plan_code
 ORDER BY delta DESC;
