/**
 * fast-check Arbitraries of generated ftrace traces. A trace is built deterministically from a
 * Recipe of small integers (truth.ts), so shrinking the recipe (fewer steps, smaller numbers)
 * always gives another valid trace, and a counterexample prints as its recipe:
 *
 *   fc.assert(fc.property(traceArb({ skewUs: 20 }), (t) => { ... t.text, t.truth, t.oracle ... }));
 *   generateTrace(recipe, options)   // rebuilds the same trace from a printed recipe
 */
import fc from 'fast-check';
import { Oracle } from './oracle.js';
import { renderTrace, type RenderedTrace } from './render.js';
import { resolveOptions, type Recipe, type ResolvedOptions, type Step, type TraceOptions, type Truth } from './truth.js';
import { buildTruth } from './workload.js';

export interface GeneratedTrace {
  recipe: Recipe;
  options: ResolvedOptions;
  /** The whole trace file. */
  text: string;
  /** Its lines (without `\n`); lines[i] is line i + 1. */
  lines: string[];
  truth: Truth;
  oracle: Oracle;
  rendered: RenderedTrace;
}

function isResolved(o: TraceOptions | ResolvedOptions): o is ResolvedOptions {
  return Array.isArray(o.profiles) && typeof (o as ResolvedOptions).maxDomains === 'number';
}

/** Builds the trace of a recipe. Deterministic: the same recipe and options give the same text. */
export function generateTrace(recipe: Recipe, options: TraceOptions | ResolvedOptions = {}): GeneratedTrace {
  const opts = isResolved(options) ? options : resolveOptions(options);
  const truth = buildTruth(recipe, opts);
  const rendered = renderTrace(truth);
  const oracle = new Oracle(truth, rendered);
  const trace: GeneratedTrace = { recipe, options: opts, text: rendered.text, lines: rendered.lines, truth, oracle, rendered };
  // What fast-check prints for a counterexample: the recipe (to rebuild it) and the text.
  Object.defineProperty(trace, fc.toStringMethod, {
    enumerable: false,
    value: () => `generateTrace(${JSON.stringify(recipe)}, ${JSON.stringify(opts)})\n${rendered.text}`,
  });
  return trace;
}

/** A recipe from the fields given, the rest at their simplest (for hand-written cases). */
export function makeRecipe(p: Partial<Recipe> = {}): Recipe {
  return { domains: 0, cpus: 0, profile: 0, domainProfiles: [], limits: [], skewNs: [], cut: 0, tieModes: [], probe: [], steps: [], ...p };
}

const nat = (max: number): fc.Arbitrary<number> => fc.nat({ max });

export function stepArb(): fc.Arbitrary<Step> {
  return fc.record({ op: nat(19), a: nat(255), b: nat(255), c: nat(255), g: nat(255) });
}

/** Recipes for the given options (only the choices the options leave open vary). */
export function recipeArb(options: TraceOptions = {}): fc.Arbitrary<Recipe> {
  const o = resolveOptions(options);
  const none: fc.Arbitrary<number[]> = fc.constant([]);
  return fc.record({
    domains: nat(o.maxDomains - 1),
    cpus: nat(2),
    profile: nat(o.profiles.length - 1),
    domainProfiles: o.mixedProfiles ? fc.array(nat(o.profiles.length - 1), { maxLength: 4 }) : none,
    limits: fc.array(nat(4), { maxLength: 4 }),
    skewNs: o.skewUs > 0 ? fc.array(nat(o.skewUs * 1000), { minLength: 4, maxLength: 4 }) : none,
    // Half the traces start at boot; shrinking goes there.
    cut: o.preTrace ? fc.oneof(fc.constant(0), fc.integer({ min: 1, max: 1000 })) : fc.constant(0),
    tieModes: o.ties ? fc.array(nat(3), { maxLength: 16 }) : none,
    probe: fc.array(nat(63), { maxLength: 4 }),
    steps: fc.array(stepArb(), { minLength: o.minSteps, maxLength: o.maxSteps, size: 'medium' }),
  });
}

/** Generated traces: { text, lines, truth, oracle, ... }; shrinks through the recipe. */
export function traceArb(options: TraceOptions = {}): fc.Arbitrary<GeneratedTrace> {
  const opts = resolveOptions(options);
  return recipeArb(options).map((r) => generateTrace(r, opts));
}
