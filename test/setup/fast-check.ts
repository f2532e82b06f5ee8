/**
 * fast-check's settings for every test file (vitest `setupFiles`). A property that fails on a
 * large input shrinks it by running the property again and again; with ledgers, queries and a
 * rebuild in each run, that went on for many minutes and the suite looked hung (vitest's own
 * `testTimeout` cannot stop synchronous code). So each `fc.assert` stops after 60 s: a failure
 * found by then is reported with the smallest counterexample reached so far, and a property that
 * has not finished its runs by then fails (`markInterruptAsFailure`) instead of passing with fewer
 * runs. The longest property here takes ~8 s on the project's 2-core machine.
 */
import fc from 'fast-check';

fc.configureGlobal({ ...fc.readConfigureGlobal(), interruptAfterTimeLimit: 60_000, markInterruptAsFailure: true });
