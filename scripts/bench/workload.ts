/**
 * A realistic, deterministic command stream for benchmarks: one domain on intel-vtd, maps of
 * 4K..1G (mostly small), about 80% of unmaps symmetric, the rest partial unmaps of 4K inside a
 * larger mapping (over-unmaps on 2M/1G pages) whose owner later unmaps the whole region, a few
 * faults. IOVAs come from a bump allocator that wraps; at most about 20,000 mappings are live.
 */
export interface Gen {
  next(): Record<string, unknown>;
}

/** xorshift32: fast and reproducible. */
function rng(seed: number): () => number {
  let x = seed >>> 0 || 1;
  return () => {
    x ^= x << 13;
    x >>>= 0;
    x ^= x >>> 17;
    x ^= x << 5;
    x >>>= 0;
    return x / 0x1_0000_0000;
  };
}

const K = 1024;
const M = 1024 * K;
const G = 1024 * M;

export function workload(seed = 42, domain = 'bench'): Gen {
  const r = rng(seed);
  const live: Array<{ iova: number; size: number }> = [];
  let cursor = 0;
  let first = true;
  const callers = ['vfio', 'kvm', 'dma-api', 'virtio-gpu'];
  const sites = ['drivers/vfio/vfio_iommu_type1.c:1502', 'virt/kvm/kvm_main.c:1201', 'kernel/dma/mapping.c:190', 'drivers/gpu/drm/virtio/virtgpu_vq.c:88'];
  const hex = (v: number) => `0x${v.toString(16)}`;
  const pickSize = () => {
    const x = r();
    if (x < 0.55) return 4 * K;
    if (x < 0.75) return 8 * K * (1 + Math.floor(r() * 7));
    if (x < 0.9) return 64 * K;
    if (x < 0.999) return 2 * M;
    return G;
  };
  return {
    next() {
      if (first) {
        first = false;
        return { op: 'domain', domain, profile: 'intel-vtd' };
      }
      const x = r();
      const who = Math.floor(r() * callers.length);
      const caller = callers[who]!;
      const site = sites[who]!;
      if ((live.length > 64 && x < 0.45) || live.length > 20000) {
        const i = Math.floor(r() * live.length);
        const m = live[i]!;
        const y = r();
        // A partial unmap (about one unmap in five) leaves the mapping on the list: its owner
        // unmaps the whole region later, as a real driver does when it tears down its buffer.
        if (y >= 0.7 && y < 0.9 && m.size > 4 * K && live.length <= 20000) {
          return { op: 'unmap', domain, iova: hex(m.iova + 4 * K), size: '4K', caller, site };
        }
        live[i] = live[live.length - 1]!;
        live.pop();
        return { op: 'unmap', domain, iova: hex(m.iova), size: hex(m.size), caller, site };
      }
      if (x > 0.995 && live.length) {
        const m = live[Math.floor(r() * live.length)]!;
        return { op: 'fault', domain, iova: hex(m.iova + 0x10), device: '0000:03:00.0' };
      }
      const size = pickSize();
      const align = size >= 2 * M ? size : 4 * K;
      cursor = Math.ceil(cursor / align) * align;
      if (cursor + size > 2 ** 40) cursor = 0;
      const iova = cursor + 2 ** 32; // above 4G
      cursor += size;
      live.push({ iova, size });
      return { op: 'map', domain, iova: hex(iova), paddr: hex(0x10_0000_0000 + (iova % (64 * G))), size: hex(size), prot: 'rw', caller, site };
    },
  };
}
