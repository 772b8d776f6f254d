"""The study's stages: create or resume it (``prepare``), train and score a trial (``objective``),
plan the time (``budget``) and judge the finalists out of fold (``finalists``)."""
