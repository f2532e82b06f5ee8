/**
 * Validation of user-written custom profiles with zod (kept apart from profile.ts, so that
 * reading a ledger does not load zod).
 */
import { z } from 'zod';
import { buildProfile, ProfileError, type Profile } from './profile.js';

const sizeValue = z.union([z.string(), z.number(), z.bigint()]);

/** A custom profile as users write it (JSON). */
export const CustomProfileSpec = z
  .object({
    name: z.string().min(1).default('custom'),
    /** Page sizes as a list (`["4K","2M"]`) ... */
    pgsizes: z.array(sizeValue).optional(),
    /** ... or as the kernel's bitmap (`"0x40201000"`). */
    pgsizeBitmap: sizeValue.optional(),
    iovaBits: z.number().int().optional(),
    semantics: z.enum(['legacy', 'split', 'strict', 'refuse-partial', 'iommupt']).optional(),
    /** Base a custom profile on a built-in one (its format, width and semantics). */
    base: z.string().optional(),
    emptyUnmapErrno: z.literal('ENOENT').optional(),
  })
  .strict();
export type CustomProfileSpec = z.input<typeof CustomProfileSpec>;

function zodMessage(e: z.ZodError): string {
  return e.issues.map((i) => `${i.path.length ? i.path.join('.') : 'profile'}: ${i.message}`).join('; ');
}

/** Builds and validates a profile from a user's description; throws ProfileError saying what is wrong. */
export function customProfile(input: unknown): Profile {
  const parsed = CustomProfileSpec.safeParse(input);
  if (!parsed.success) throw new ProfileError(zodMessage(parsed.error));
  return buildProfile(parsed.data);
}
