-- The metrics scrape sums this month's spend over every user: read only that month's rows.
CREATE INDEX user_spend_month ON user_spend (month);
