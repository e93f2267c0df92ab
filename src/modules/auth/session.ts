/** A login session as stored in Redis. Times are epoch milliseconds. */
export interface Session {
  id: string;
  userId: string;
  userAgent: string;
  ip: string;
  createdAt: number;
  lastUsedAt: number;
  /** Sliding expiry: moved forward on every refresh, never past `absoluteExpiresAt`. */
  expiresAt: number;
  absoluteExpiresAt: number;
}

export type RotationResult =
  | { outcome: 'rotated'; session: Session }
  | { outcome: 'reused'; userId: string }
  | { outcome: 'invalid' };
