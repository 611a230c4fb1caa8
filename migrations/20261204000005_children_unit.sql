-- What one child of a waiting job stands for ("benchmarks"), named by the
-- job when it fans out, for the progress its children's finishes report.
ALTER TABLE jobs ADD COLUMN children_unit text;
