-- The address group of each drawn ticket, in drawn order beside `drawn_tickets`: the
-- draw takes every address's first ticket before any address's second (waiting-room
-- draw.rs), and publishes the groups so that anyone can recompute the rounds.
alter table line_marks add column drawn_groups text[];
