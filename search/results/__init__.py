"""What a study has found: statistics over images and runs (``stats``), the best trial and the
finalists against the reference (``verdict``), and the study's dashboard note (``note``)."""
