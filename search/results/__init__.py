"""What a study has found: statistics over images and runs (``stats``), the best trial and the
finalists against the reference (``verdict``), the study's dashboard note (``note``) and its
report's figures (``figures``)."""
