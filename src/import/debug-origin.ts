/**
 * Who printed an iommu.c debug line: its caller and call site, from the log prefix before the
 * message (TraceRecord.prefix). See docs/import.md, "From records to commands".
 */
const SOURCE_FILE_RE = /^[\w./+-]+\.[chS]$/;
const IDENTIFIER_RE = /^[A-Za-z_]\w*$/;
const LINE_NO_RE = /^\d+$/;

/**
 * The caller and call site of an iommu.c debug line, from its log prefix (TraceRecord.prefix).
 * A dynamic-debug prefix (`[TID] MODULE:FUNCTION:FILE:LINE: `, each part optional, also after a
 * `FILE:LINE: ` part) names the function: it is the caller, and `FILE:LINE` the site (without a
 * file, the dynamic-debug part as printed, e.g. `iommu:__iommu_map:2461`). The `: `-separated
 * parts of the prefix that hold a `:` and no space, with a line number or a source file, are
 * read as dynamic debug; the function is the last C identifier among them. Without a function,
 * the caller is the rest of the prefix (the pr_fmt `iommu`, a device), or all of it.
 */
export function debugOrigin(prefix: string): { caller: string; site?: string } {
  let fn: string | undefined;
  let file: string | undefined;
  let line: string | undefined;
  let dyn: string | undefined;
  const rest: string[] = [];
  for (const seg of prefix.replace(/^(?:\[\d+\]|<intr>) /, '').split(': ')) {
    const parts = seg.split(':');
    if (parts.length < 2 || /\s/.test(seg) || !parts.some((p) => LINE_NO_RE.test(p) || SOURCE_FILE_RE.test(p))) {
      rest.push(seg);
      continue;
    }
    for (let i = 0; i < parts.length; i++) {
      const p = parts[i]!;
      if (SOURCE_FILE_RE.test(p)) {
        if (file === undefined && LINE_NO_RE.test(parts[i + 1] ?? '')) {
          file = p;
          line = parts[i + 1];
        }
        i++;
      } else if (IDENTIFIER_RE.test(p)) {
        fn = p;
        dyn = seg;
      }
    }
  }
  const site = file !== undefined ? `${file}:${line}` : dyn;
  if (fn !== undefined) return { caller: fn, site: site! };
  if (site === undefined) return { caller: prefix };
  return { caller: rest.join(': ') || prefix, site };
}
