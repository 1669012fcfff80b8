/**
 * Typed client for the station's JSON readings endpoint.
 *
 * The server returns readings with the same fields as stationkit's CSV log,
 * renamed to camelCase.
 */

export interface Reading {
  sensorId: string;
  quantity: string;
  value: number;
  unit: string;
  timestamp: number;
}

export interface HistoryQuery {
  sensorId: string;
  start?: number;
  end?: number;
}

export type FetchLike = (url: string) => Promise<{ ok: boolean; status: number; json(): Promise<unknown> }>;

export const DEFAULT_BASE_URL = "/api/v1";

export class ApiError extends Error {
  constructor(readonly status: number, url: string) {
    super(`request to ${url} failed with status ${status}`);
    this.name = "ApiError";
  }
}

export class StationClient {
  constructor(
    private readonly fetchFn: FetchLike,
    private readonly baseUrl: string = DEFAULT_BASE_URL,
  ) {}

  /** Return the newest reading of one sensor, or undefined if it has none yet. */
  async latest(sensorId: string): Promise<Reading | undefined> {
    const rows = await this.getRows(`/sensors/${encodeURIComponent(sensorId)}/latest`);
    return rows.length > 0 ? rows[0] : undefined;
  }

  /** Return the readings of one sensor between start (inclusive) and end (exclusive). */
  async history(query: HistoryQuery): Promise<Reading[]> {
    const params = new URLSearchParams();
    if (query.start !== undefined) params.set("start", String(query.start));
    if (query.end !== undefined) params.set("end", String(query.end));
    const suffix = params.toString() ? `?${params}` : "";
    return this.getRows(`/sensors/${encodeURIComponent(query.sensorId)}/readings${suffix}`);
  }

  private async getRows(path: string): Promise<Reading[]> {
    const url = `${this.baseUrl}${path}`;
    const response = await this.fetchFn(url);
    if (!response.ok) {
      throw new ApiError(response.status, url);
    }
    const body = await response.json();
    const rows = Array.isArray(body) ? body : [body];
    return rows.map((row) => parseReading(row as Record<string, unknown>));
  }
}

/** Validate one raw JSON object and convert it to a Reading. */
export function parseReading(raw: Record<string, unknown>): Reading {
  return {
    sensorId: requireString(raw, "sensor_id"),
    quantity: requireString(raw, "quantity"),
    value: requireNumber(raw, "value"),
    unit: requireString(raw, "unit"),
    timestamp: requireNumber(raw, "timestamp"),
  };
}

function requireString(raw: Record<string, unknown>, key: string): string {
  const value = raw[key];
  if (typeof value !== "string") {
    throw new TypeError(`field ${key} must be a string`);
  }
  return value;
}

function requireNumber(raw: Record<string, unknown>, key: string): number {
  const value = raw[key];
  if (typeof value !== "number" || Number.isNaN(value)) {
    throw new TypeError(`field ${key} must be a number`);
  }
  return value;
}
