-- Every comment and check run sam means to post while handling a delivery, recorded before
-- it is posted and marked with GitHub's id once it is. A retried delivery (after a crash,
-- or after GitHub's answer to the post was lost) finds here what already went out, and
-- for a post whose outcome was never learned, looks on GitHub for the hidden marker
-- `<!-- sam:reply <delivery>/<seq> -->` the post carried, so that nothing is posted twice.
CREATE TABLE replies (
    delivery_id BIGINT NOT NULL REFERENCES deliveries (id),
    -- The n-th post of the delivery's handling, counted from 0 on every try.
    seq         INTEGER NOT NULL,
    kind        TEXT NOT NULL CHECK (kind IN ('comment', 'check_run')),
    -- Where it goes: the issue's or the commit's API path.
    target      TEXT NOT NULL,
    github_id   BIGINT,
    intended_at TIMESTAMPTZ NOT NULL DEFAULT now(),
    posted_at   TIMESTAMPTZ,
    PRIMARY KEY (delivery_id, seq)
);
