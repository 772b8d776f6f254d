"""The study's stages: create or resume it (``prepare``), train a trial (``objective``) and score it
(``scores``), plan the time (``budget``) and judge the finalists out of fold (``finalists``)."""
