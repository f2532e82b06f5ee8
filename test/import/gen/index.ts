/**
 * A generator of realistic Linux 6.1 ftrace traces of the iommu events, from a known truth,
 * with its oracle, for property tests of the importer.
 *
 *   recipe (small integers, shrinkable)      truth.ts     Recipe, TraceOptions
 *     -> truth (domains, events in true time) workload.ts  buildTruth (IOVA allocator: iova.ts)
 *     -> text (ftrace as the kernel prints)   render.ts    renderTrace
 *     -> oracle (what the ledger should say)  oracle.ts    Oracle
 *   fast-check                                arbitrary.ts traceArb, recipeArb, generateTrace
 */
export { generateTrace, makeRecipe, recipeArb, stepArb, traceArb, type GeneratedTrace } from './arbitrary.js';
export { IovaDomain } from './iova.js';
export { Oracle, type CausalInversion, type OracleRecord, type RevealedPreTrace } from './oracle.js';
export { depthUnion, normalize, subtract, type ByteRange, type DepthRange } from './ranges.js';
export { formatLine, payload, printedOrder, renderTrace, type RenderedRecord, type RenderedTrace } from './render.js';
export * from './truth.js';
export { buildTruth, gapNs, STEP_KINDS, type StepKind } from './workload.js';
