/**
 * A migration of the callers in the demo ledger (`npm run demo`) to symmetric map/unmap:
 *
 *   iommu-ledger --db iommu-ledger-demo.db migrate --script scripts/migrations/demo-symmetric.ts --out migrated.db
 *
 * Rules are tried in order; the first that matches a command decides. A rule names a built-in
 * strategy or is a function of one's own (here: the OMAP case, written out by hand).
 * Outside this repository, import defineMigration from 'iommu-ledger/migrate' (or export a plain
 * object of the same shape).
 */
import { defineMigration } from '../../src/migrate/define.js';

export default defineMigration({
  name: 'demo: symmetric unmap for every caller',
  rules: [
    // vfio maps 8K and unmaps it as two 4K pieces: map it in the pieces the unmaps use.
    { caller: 'vfio', strategy: 'split-maps' },
    // kvm unmaps 4K out of vfio's 2M map: unmap the whole map and map back what vfio still needs.
    { caller: 'kvm', strategy: 'widen-unmaps' },
    // The 2011 OMAP case by hand: gst-launch maps 1M, its queue thread unmaps 4K of it. Map the
    // buffer in 4K-aligned pieces wherever the later unmaps cut it; leave the unmaps alone.
    {
      domain: 'omap-isp',
      strategy: (cmd, ctx) => (cmd.op === 'map' ? ctx.splitMaps(cmd) : [{ op: 'unmap', iova: cmd.iova, size: cmd.size }]),
    },
    // Everything else (the dsp and the qemu/KVM threads of the VFIO trace): report, change nothing.
    { strategy: 'flag' },
  ],
});
