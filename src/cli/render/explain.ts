/** `explain --json`: the read layer's answer (its text, and the data behind it). */
import type { Queries } from '../../projections/queries.js';
import { findingJson } from './findings.js';

type Explanation = ReturnType<Queries['explain']>;

export function explainJson(e: Explanation): unknown {
  return { text: e.text, blame: e.blame, findings: e.findings.map(findingJson), faults: e.faults, removed: e.removed };
}
