/**
 * Reading stored event bodies (no zod here: query commands load this without the schemas).
 */

/** A stored event that cannot be read: the file was changed outside iommu-ledger. */
export class CorruptEventError extends Error {
  constructor(message: string) {
    super(message);
    this.name = 'CorruptEventError';
  }
}

/** An event's stored body, parsed; `what` names the event in the error when it is not JSON. */
export function parseStored<T>(what: string, data: string): T {
  try {
    return JSON.parse(data) as T;
  } catch (e) {
    throw new CorruptEventError(
      `${what}: its stored body is not valid JSON (${(e as Error).message}): the ledger was changed outside iommu-ledger; 'iommu-ledger verify' shows where`,
    );
  }
}
