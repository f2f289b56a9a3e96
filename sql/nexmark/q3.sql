-- Nexmark q3, local item suggestion: who sells category-10 items in Oregon, Idaho or
-- California (auctions joined with their sellers).
CREATE STREAM nexmark_q3 AS
SELECT p.name, p.city, p.state, a.id
FROM auction a JOIN person_by_id p ON a.seller = p.id
WHERE a.category = 10 AND p.state IN ('OR', 'ID', 'CA');
