export const BASE_PATH = "/api/management/v0.9";
