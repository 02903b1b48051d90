"""The landing side: read landing files, check rows and pictures, validate (GX), load into
Postgres."""
