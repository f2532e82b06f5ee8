-- iommu-ledger schema, version 4.
-- Which event last removed the page at an IOVA (the cause of a fault, or of an unmap that hit
-- nothing) is found through runs(domain, iova) within the longest span ever mapped: one 1 GiB map
-- made every such look-up scan a 1 GiB window of the history. Runs longer than 2 MiB get their own
-- small index, so a look-up scans a 2 MiB window of the ordinary index plus the few long runs.
CREATE INDEX runs_long ON runs(domain, iova) WHERE iova_last - iova >= 2097152;
