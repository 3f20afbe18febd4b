// Adapter choice and the device: the features and limits asked for, and the AdapterReport that names the
// adapter (logs, the tuning cache key, the CPU test).

export interface AdapterReport {
  name: string;
  vendor: string;
  architecture: string;
  backend: string;
  isCpu: boolean;
  f16: boolean;
  timestampQuery: boolean;
  /** The device has the "subgroups" feature (requested by trying: Deno's adapter.features does not list it). */
  subgroups: boolean;
  /** The adapter's driver description (adapter.info.description; part of the tuning cache key). */
  driver?: string;
  limits: Record<string, number>;
}

/** Which optional features to ask for (each defaults to on, when the adapter has it). */
export interface DeviceOptions {
  f16?: boolean;
  timestamps?: boolean;
  subgroups?: boolean;
}

// The limits we ask for: the adapter's own (Deno otherwise hands out WebGPU's minimums).
const WANTED_LIMITS = [
  "maxStorageBufferBindingSize",
  "maxBufferSize",
  "maxComputeWorkgroupStorageSize",
  "maxComputeInvocationsPerWorkgroup",
  "maxComputeWorkgroupSizeX",
  "maxComputeWorkgroupSizeY",
  "maxComputeWorkgroupSizeZ",
  "maxComputeWorkgroupsPerDimension",
  "maxStorageBuffersPerShaderStage",
  "maxUniformBufferBindingSize",
  "maxBindGroups",
] as const;

/** The high-performance adapter, a device with its own limits and the wanted features, and its report. */
export async function openDevice(
  opts: DeviceOptions = {},
): Promise<{ device: GPUDevice; report: AdapterReport }> {
  const adapter = await requestAdapter();
  const features: GPUFeatureName[] = [];
  if (adapter.features.has("shader-f16") && opts.f16 !== false) features.push("shader-f16");
  if (adapter.features.has("timestamp-query") && opts.timestamps !== false) features.push("timestamp-query");
  const requiredLimits: Record<string, number> = {};
  for (const k of WANTED_LIMITS) {
    const v = (adapter.limits as unknown as Record<string, number>)[k];
    if (typeof v === "number") requiredLimits[k] = v;
  }
  // Subgroups: Deno accepts the feature in requestDevice although adapter.features does not list it (Mesa's
  // lavapipe runs subgroup ops, size 8). Try with it; fall back without.
  let device: GPUDevice | undefined;
  let subgroups = false;
  if (opts.subgroups !== false) {
    try {
      const withSg = [...features, "subgroups" as GPUFeatureName];
      device = await adapter.requestDevice({ requiredFeatures: withSg, requiredLimits });
      subgroups = device.features.has("subgroups");
    } catch {
      device = undefined;
    }
  }
  device ??= await adapter.requestDevice({ requiredFeatures: features, requiredLimits });
  return { device, report: adapterReport(adapter.info, device, features, subgroups) };
}

async function requestAdapter(): Promise<GPUAdapter> {
  if (!("gpu" in navigator) || !navigator.gpu) {
    throw new Error(
      "WebGPU is not available in this Deno (navigator.gpu is missing). Use Deno 2.x: npm i -g deno@2.9.6",
    );
  }
  const adapter = await navigator.gpu.requestAdapter({ powerPreference: "high-performance" });
  if (!adapter) {
    throw new Error(
      "No WebGPU adapter found. Install a GPU driver with Vulkan/Metal/D3D12 support, or on a machine " +
        "without a GPU, Mesa's lavapipe: apt-get install -t bookworm-backports mesa-vulkan-drivers",
    );
  }
  return adapter;
}

function adapterReport(
  info: GPUAdapterInfo,
  device: GPUDevice,
  features: GPUFeatureName[],
  subgroups: boolean,
): AdapterReport {
  const desc = info.description || "";
  // Browsers often leave description and device empty (Chrome: vendor "google", architecture
  // "swiftshader"), so the name and the CPU test fall back to vendor and architecture.
  const vendorArch = [info.vendor, info.architecture].filter(Boolean).join(" ");
  const isCpu = /llvmpipe|lavapipe|swiftshader|warp|software/i.test(`${desc} ${vendorArch}`) ||
    (info as unknown as { isFallbackAdapter?: boolean }).isFallbackAdapter === true;
  const limits: Record<string, number> = {};
  for (const k of WANTED_LIMITS) {
    limits[k] = (device.limits as unknown as Record<string, number>)[k];
  }
  return {
    name: desc || info.device || vendorArch || "unknown",
    vendor: info.vendor || "unknown",
    architecture: info.architecture || "",
    backend: backendName(),
    isCpu,
    f16: features.includes("shader-f16"),
    timestampQuery: features.includes("timestamp-query"),
    subgroups,
    driver: desc,
    limits,
  };
}

/** Deno's WebGPU (wgpu) does not expose the backend; infer it from the platform. */
function backendName(): string {
  if (typeof Deno === "undefined") return "browser";
  if (Deno.build.os === "darwin") return "metal";
  if (Deno.build.os === "windows") return "dx12/vulkan";
  return "vulkan";
}
