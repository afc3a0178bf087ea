/** Over the total budget, connections with at least this much unsent (and a full transport) are the ones cut off. */
export const BEHIND_BYTES = 64 * 1024;

/** A connection's share of an {@link UnsentBudget}. */
export interface BudgetHolder {
  /** Bytes this holder counts in the budget now. */
  budgetShare(): number;
  /** True when its transport is full and it holds enough to be worth cutting off. */
  isBehind(): boolean;
  /** Cuts it off as a slow consumer (it resumes from history with its Last-Event-ID). */
  shed(): void;
}

/**
 * Unsent bytes of a handler's connections together, against
 * `maxTotalUnsentBytes`. Only what the process really holds for a client
 * counts: live events queued for it, and what its transport buffers while
 * full. History not written yet does not: it is references to frames the
 * backend keeps anyway, so counting it would let idle clients on quiet
 * streams fill the budget without holding memory.
 */
export class UnsentBudget {
  total = 0;
  readonly max: number;
  private readonly holders = new Set<BudgetHolder>();

  constructor(max: number) {
    this.max = max;
  }

  get exceeded(): boolean {
    return this.total > this.max;
  }

  /**
   * Records a holder's change of share. Only holders with `BEHIND_BYTES` or more can be shed, so
   * only they are tracked: a connection that keeps up (a few KiB queued, then flushed) costs the
   * per-event path no Set update.
   */
  update(holder: BudgetHolder, previous: number, now: number): void {
    this.total += now - previous;
    if (now >= BEHIND_BYTES) this.holders.add(holder);
    else if (previous >= BEHIND_BYTES) this.holders.delete(holder);
  }

  /**
   * Over budget, cuts off the holders that are behind, largest first, until
   * it is under again; true when it is. Holders that keep up are never cut
   * for others, and a newcomer is refused only when nothing can be shed.
   */
  shed(): boolean {
    if (!this.exceeded) return true;
    const behind = [...this.holders].filter((holder) => holder.isBehind()).sort((a, b) => b.budgetShare() - a.budgetShare());
    for (const holder of behind) {
      if (!this.exceeded) break;
      holder.shed();
    }
    return !this.exceeded;
  }
}
