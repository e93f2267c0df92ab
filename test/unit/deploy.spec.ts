/**
 * The Kubernetes manifests (`deploy/k8s`) and the container image (`Dockerfile`), checked
 * without a cluster or a Docker engine: every object validates against the Kubernetes schema
 * (kubernetes-models), and the invariants the service depends on hold — probe paths, a grace
 * period longer than the shutdown it must cover, a persistent volume per pod for the buffer,
 * references that resolve, a configuration the service accepts, and image and pod agreeing on
 * user, paths and port. kubernetes-models ignores unknown fields, so a misspelt field is caught
 * by the invariant that reads it, not by the schema.
 */
import { spawnSync } from 'node:child_process';
import { existsSync, readdirSync, readFileSync } from 'node:fs';
import path from 'node:path';
import { parseAllDocuments, parseDocument } from 'yaml';
import {
  HorizontalPodAutoscaler,
  type IHorizontalPodAutoscaler,
} from 'kubernetes-models/autoscaling/v2/HorizontalPodAutoscaler';
import { StatefulSet, type IStatefulSet } from 'kubernetes-models/apps/v1/StatefulSet';
import { Job, type IJob } from 'kubernetes-models/batch/v1/Job';
import {
  PodDisruptionBudget,
  type IPodDisruptionBudget,
} from 'kubernetes-models/policy/v1/PodDisruptionBudget';
import { ConfigMap, type IConfigMap } from 'kubernetes-models/v1/ConfigMap';
import { Namespace } from 'kubernetes-models/v1/Namespace';
import { Secret, type ISecret } from 'kubernetes-models/v1/Secret';
import { Service, type IService } from 'kubernetes-models/v1/Service';
import { ConfigError, loadConfig } from '../../src/config/app-config.js';
import { envSchema } from '../../src/config/env.schema.js';

const ROOT = path.resolve(import.meta.dirname, '../..');
const K8S_DIR = path.join(ROOT, 'deploy/k8s');
/** Manifests an operator applies on demand, outside the kustomization. */
const ON_DEMAND = ['drain-job.yaml'];

interface K8sObject {
  apiVersion: string;
  kind: string;
  metadata?: { name?: string; namespace?: string; labels?: Record<string, string> };
  [key: string]: unknown;
}

interface Model {
  validate(): void;
}

/** Every kind the manifests may use, with the class that validates it. */
const MODELS: Record<string, new (data: never) => Model> = {
  'v1/Namespace': Namespace,
  'v1/ConfigMap': ConfigMap,
  'v1/Secret': Secret,
  'v1/Service': Service,
  'apps/v1/StatefulSet': StatefulSet,
  'policy/v1/PodDisruptionBudget': PodDisruptionBudget,
  'autoscaling/v2/HorizontalPodAutoscaler': HorizontalPodAutoscaler,
};

interface Kustomization {
  apiVersion: string;
  kind: string;
  namespace?: string;
  resources: string[];
  images?: { name: string; newName?: string; newTag?: string }[];
}

function parseYaml(file: string): unknown[] {
  const docs = parseAllDocuments(readFileSync(file, 'utf8'), { prettyErrors: true });
  if (!Array.isArray(docs)) return [];
  return docs.map((doc) => {
    if (doc.errors.length > 0)
      throw new Error(`${file}: ${doc.errors.map((e) => e.message).join('; ')}`);
    if (doc.warnings.length > 0)
      throw new Error(`${file}: ${doc.warnings.map((e) => e.message).join('; ')}`);
    return doc.toJS();
  });
}

function loadKustomization(): Kustomization {
  const doc = parseDocument(readFileSync(path.join(K8S_DIR, 'kustomization.yaml'), 'utf8'));
  if (doc.errors.length > 0) throw new Error(doc.errors.map((e) => e.message).join('; '));
  return doc.toJS() as Kustomization;
}

function loadObjects(kustomization: Kustomization): { file: string; object: K8sObject }[] {
  return kustomization.resources.flatMap((resource) =>
    parseYaml(path.join(K8S_DIR, resource)).map((object) => ({
      file: resource,
      object: object as K8sObject,
    })),
  );
}

/** Kubernetes quantities: `2Gi`, `512Mi`, `250m`, `1`. */
function quantity(value: string | number | undefined): number {
  if (value === undefined) throw new Error('missing quantity');
  const match = /^(\d+(?:\.\d+)?)(m|Ki|Mi|Gi|Ti|k|M|G|T)?$/.exec(String(value));
  if (!match) throw new Error(`not a quantity: ${value}`);
  const factor: Record<string, number> = {
    m: 1e-3,
    k: 1e3,
    M: 1e6,
    G: 1e9,
    T: 1e12,
    Ki: 2 ** 10,
    Mi: 2 ** 20,
    Gi: 2 ** 30,
    Ti: 2 ** 40,
  };
  return Number(match[1]) * (match[2] ? factor[match[2]]! : 1);
}

function selects(
  selector: Record<string, string> | undefined,
  labels: Record<string, string> | undefined,
): boolean {
  if (!selector || Object.keys(selector).length === 0) return false;
  return Object.entries(selector).every(([key, value]) => labels?.[key] === value);
}

describe('Kubernetes manifests (deploy/k8s)', () => {
  const kustomization = loadKustomization();
  const objects = loadObjects(kustomization);
  const ofKind = <T>(kind: string): T[] =>
    objects.filter((o) => o.object.kind === kind).map((o) => o.object as unknown as T);
  const only = <T>(kind: string): T => {
    const found = ofKind<T>(kind);
    if (found.length !== 1) throw new Error(`expected one ${kind}, found ${found.length}`);
    return found[0]!;
  };

  const statefulSet = only<IStatefulSet>('StatefulSet');
  const podSpec = statefulSet.spec!.template.spec!;
  const podLabels = statefulSet.spec!.template.metadata?.labels;
  const container = podSpec.containers.find((c) => c.name === 'taskd')!;
  const configMap = only<IConfigMap>('ConfigMap');
  const secret = only<ISecret>('Secret');
  const services = ofKind<IService>('Service');
  const config = configMap.data ?? {};

  describe('kustomization', () => {
    it('lists every manifest in the directory, and only files that exist', () => {
      const files = readdirSync(K8S_DIR).filter(
        (f) => /\.ya?ml$/.test(f) && f !== 'kustomization.yaml' && !ON_DEMAND.includes(f),
      );
      expect([...kustomization.resources].sort()).toEqual(files.sort());
      expect(kustomization).toMatchObject({
        apiVersion: 'kustomize.config.k8s.io/v1beta1',
        kind: 'Kustomization',
      });
    });

    it('sets the namespace and the image of the container', () => {
      expect(kustomization.namespace).toBe(only<K8sObject>('Namespace').metadata?.name);
      for (const { object } of objects)
        expect([object.kind, object.metadata?.namespace]).toEqual([object.kind, undefined]);
      expect(kustomization.images?.map((i) => i.name)).toContain(container.image);
    });
  });

  describe('schema', () => {
    it.each(
      objects.map(
        ({ file, object }) => [`${file}: ${object.kind} ${object.metadata?.name}`, object] as const,
      ),
    )('%s validates', (_name, object) => {
      const Model = MODELS[`${object.apiVersion}/${object.kind}`];
      if (!Model) throw new Error(`no schema for ${object.apiVersion} ${object.kind}`);
      expect(() => new Model(object as never).validate()).not.toThrow();
    });

    it('rejects what the schema forbids (the validation is not vacuous)', () => {
      const broken = structuredClone(statefulSet) as unknown as { spec: { replicas: unknown } };
      broken.spec.replicas = 'two';
      expect(() => new StatefulSet(broken as never).validate()).toThrow(/replicas/);
    });
  });

  describe('probes and shutdown', () => {
    it('checks readiness on /health/ready and liveness and start-up on /health/live, on the http port', () => {
      expect(container.readinessProbe?.httpGet).toMatchObject({
        path: '/health/ready',
        port: 'http',
      });
      expect(container.livenessProbe?.httpGet).toMatchObject({
        path: '/health/live',
        port: 'http',
      });
      expect(container.startupProbe?.httpGet).toMatchObject({ path: '/health/live', port: 'http' });
      expect(container.ports?.find((p) => p.name === 'http')?.containerPort).toBe(
        Number(config.PORT),
      );
    });

    it('gives a slow start time before liveness applies', () => {
      const startup = container.startupProbe!;
      expect(
        (startup.periodSeconds ?? 10) * (startup.failureThreshold ?? 3),
      ).toBeGreaterThanOrEqual(30);
    });

    it('pauses before SIGTERM so endpoints are removed first', () => {
      const preStop = container.lifecycle?.preStop;
      const seconds =
        preStop?.sleep?.seconds ??
        Number(preStop?.exec?.command?.join(' ').match(/^sleep (\d+)$/)?.[1]);
      expect(seconds).toBeGreaterThanOrEqual(3);
    });

    it('waits longer than the pre-stop pause, the drain and the shutdown timeout together', () => {
      const preStop = container.lifecycle!.preStop!;
      const preStopMs = 1000 * (preStop.sleep?.seconds ?? Number(preStop.exec!.command!.at(-1)));
      const shutdownMs =
        preStopMs + Number(config.SHUTDOWN_DRAIN_MS) + Number(config.SHUTDOWN_TIMEOUT_MS);
      expect(Number.isFinite(shutdownMs)).toBe(true);
      expect(podSpec.terminationGracePeriodSeconds! * 1000).toBeGreaterThan(shutdownMs);
    });
  });

  describe('buffer storage', () => {
    const bufferMount = container.volumeMounts?.find((m) => m.mountPath === config.BUFFER_PATH);

    it('mounts BUFFER_PATH from a volume claim template: one persistent volume per pod', () => {
      expect(bufferMount).toBeDefined();
      const claim = statefulSet.spec!.volumeClaimTemplates?.find(
        (t) => t.metadata?.name === bufferMount!.name,
      );
      expect(claim?.spec?.accessModes).toEqual(['ReadWriteOnce']);
      // A pod volume of the same name (an emptyDir, say) would shadow the claim.
      expect(podSpec.volumes?.map((v) => v.name)).not.toContain(bufferMount!.name);
      expect(podSpec.volumes?.filter((v) => v.emptyDir).map((v) => v.name)).toEqual(['tmp']);
    });

    it('sizes the volume above the LMDB map (twice BUFFER_MAX_BYTES)', () => {
      const claim = statefulSet.spec!.volumeClaimTemplates!.find(
        (t) => t.metadata?.name === bufferMount!.name,
      )!;
      expect(quantity(claim.spec!.resources!.requests!.storage)).toBeGreaterThan(
        2 * Number(config.BUFFER_MAX_BYTES),
      );
    });

    it('keeps buffer volumes when pods are deleted or scaled away', () => {
      expect(statefulSet.spec!.persistentVolumeClaimRetentionPolicy).toEqual({
        whenDeleted: 'Retain',
        whenScaled: 'Retain',
      });
    });
  });

  describe('security and resources', () => {
    it('runs as a non-root user on a read-only root file system, writing only the buffer and /tmp', () => {
      expect(podSpec.securityContext).toMatchObject({
        runAsNonRoot: true,
        runAsUser: 1000,
        fsGroup: 1000,
      });
      expect(container.securityContext).toMatchObject({
        readOnlyRootFilesystem: true,
        allowPrivilegeEscalation: false,
        capabilities: { drop: ['ALL'] },
      });
      expect(container.volumeMounts?.map((m) => m.mountPath).sort()).toEqual(
        [config.BUFFER_PATH, '/tmp'].sort(),
      );
    });

    it('requests and limits CPU and memory', () => {
      const { requests, limits } = container.resources ?? {};
      for (const kind of ['cpu', 'memory']) {
        expect(quantity(requests?.[kind])).toBeGreaterThan(0);
        expect(quantity(limits?.[kind])).toBeGreaterThanOrEqual(quantity(requests?.[kind]));
      }
    });

    it("caps V8's old generation at half the memory limit at most", () => {
      const options = container.env?.find((e) => e.name === 'NODE_OPTIONS')?.value ?? '';
      const heapMb = Number(/--max-old-space-size=(\d+)/.exec(options)?.[1]);
      expect(heapMb).toBeGreaterThan(0);
      expect(heapMb * 2 ** 20 * 2).toBeLessThanOrEqual(quantity(container.resources?.limits?.memory));
    });
  });

  describe('references', () => {
    it('governs the StatefulSet with a headless Service and serves clients through a ClusterIP Service', () => {
      const headless = services.find((s) => s.metadata?.name === statefulSet.spec!.serviceName);
      expect(headless?.spec?.clusterIP).toBe('None');
      const clusterIp = services.filter(
        (s) => s.spec?.clusterIP !== 'None' && (s.spec?.type ?? 'ClusterIP') === 'ClusterIP',
      );
      expect(clusterIp).toHaveLength(1);
      for (const service of services) {
        expect(selects(service.spec?.selector, podLabels)).toBe(true);
        for (const port of service.spec?.ports ?? [])
          expect(container.ports?.map((p) => p.name)).toContain(port.targetPort);
      }
    });

    it('selects its own pods', () => {
      expect(selects(statefulSet.spec!.selector.matchLabels, podLabels)).toBe(true);
    });

    it('takes its environment from the ConfigMap and the Secret', () => {
      expect(container.envFrom).toEqual([
        { configMapRef: { name: configMap.metadata?.name } },
        { secretRef: { name: secret.metadata?.name } },
      ]);
    });

    it('has a PodDisruptionBudget and an autoscaler for the StatefulSet', () => {
      const pdb = only<IPodDisruptionBudget>('PodDisruptionBudget');
      expect(selects(pdb.spec?.selector?.matchLabels, podLabels)).toBe(true);
      expect(pdb.spec?.maxUnavailable ?? 0).toBeGreaterThanOrEqual(1);
      const hpa = only<IHorizontalPodAutoscaler>('HorizontalPodAutoscaler');
      expect(hpa.spec!.scaleTargetRef).toEqual({
        apiVersion: 'apps/v1',
        kind: 'StatefulSet',
        name: statefulSet.metadata?.name,
      });
      expect(hpa.spec!.minReplicas).toBeGreaterThanOrEqual(2);
      expect(hpa.spec!.maxReplicas).toBeGreaterThan(hpa.spec!.minReplicas!);
    });
  });

  describe('autoscaler', () => {
    it('never proposes fewer replicas than there are while a buffer holds writes', () => {
      const hpa = only<IHorizontalPodAutoscaler>('HorizontalPodAutoscaler');
      const floor = hpa.spec!.metrics!.find((metric) => metric.type === 'External');
      expect(floor?.external).toEqual({
        metric: { name: 'taskd_buffer_scale_floor' },
        target: { type: 'AverageValue', averageValue: '1' },
      });
      // The adapter rule in the manifest's header builds the floor from the metric pods export.
      const header = readFileSync(path.join(K8S_DIR, 'hpa.yaml'), 'utf8');
      expect(header).toContain('taskd_buffer_holding_writes');
      const exported = readFileSync(path.join(ROOT, 'src/modules/metrics/buffer-metrics.ts'), 'utf8');
      expect(exported).toContain("'taskd_buffer_holding_writes'");
    });
  });

  describe('drain job (on demand)', () => {
    const [job] = parseYaml(path.join(K8S_DIR, 'drain-job.yaml')) as IJob[];
    const jobPod = job!.spec!.template.spec!;
    const drain = jobPod.containers[0]!;
    const bufferMount = container.volumeMounts!.find((mount) => mount.name === 'buffer')!;

    it('validates', () => {
      expect(() => new Job(job as never).validate()).not.toThrow();
    });

    it('runs the drain command of the image the StatefulSet runs, with its configuration', () => {
      const image = kustomization.images!.find((i) => i.name === container.image)!;
      expect(drain.image).toBe(`${image.newName}:${image.newTag}`);
      expect(drain.command?.slice(0, 5)).toEqual(['node', 'dist/src/cli.js', 'buffer', 'drain', '--timeout-seconds']);
      expect(existsSync(path.join(ROOT, 'src/cli.ts'))).toBe(true);
      expect(drain.envFrom).toEqual(container.envFrom);
      expect(job!.metadata?.namespace).toBe(kustomization.namespace);
    });

    it("mounts a retained buffer claim of the StatefulSet at the pod's BUFFER_PATH, as the pod's user", () => {
      const claimTemplate = statefulSet.spec!.volumeClaimTemplates![0]!.metadata!.name;
      const volume = jobPod.volumes!.find((v) => v.persistentVolumeClaim)!;
      expect(volume.persistentVolumeClaim!.claimName).toBe(`${claimTemplate}-${statefulSet.metadata!.name}-ORDINAL`);
      const mount = drain.volumeMounts!.find((m) => m.name === volume.name)!;
      expect(mount.mountPath).toBe(bufferMount.mountPath);
      expect(mount.mountPath).toBe(config.BUFFER_PATH);
      expect(jobPod.securityContext).toEqual(podSpec.securityContext);
      expect(drain.securityContext).toEqual(container.securityContext);
      expect(jobPod.restartPolicy).toBe('Never');
    });
  });

  describe('configuration', () => {
    const schemaKeys = Object.keys(envSchema);
    const secretData = (secret.stringData ?? {}) as Record<string, string>;

    it('names only variables the service reads, credentials only in the Secret', () => {
      expect(Object.keys(config).filter((k) => !schemaKeys.includes(k))).toEqual([]);
      expect(Object.keys(secretData).filter((k) => !schemaKeys.includes(k))).toEqual([]);
      expect(Object.keys(secretData).sort()).toEqual(['DATABASE_URL', 'JWT_SECRET', 'REDIS_URL']);
      expect(Object.keys(config).filter((k) => k in secretData)).toEqual([]);
      expect(secret.data).toBeUndefined();
    });

    it('is a configuration the service accepts once the Secret holds real values', () => {
      const env = { ...config, ...secretData, JWT_SECRET: 'k'.repeat(48) };
      const loaded = loadConfig(env);
      expect(loaded.isProduction).toBe(true);
      expect(loaded.buffer.path).toBe(config.BUFFER_PATH);
      expect(loaded.shutdown).toEqual({
        drainMs: Number(config.SHUTDOWN_DRAIN_MS),
        timeoutMs: Number(config.SHUTDOWN_TIMEOUT_MS),
      });
    });

    it('refuses to start with the Secret template applied unchanged', () => {
      expect(() => loadConfig({ ...config, ...secretData })).toThrow(ConfigError);
      expect(() => loadConfig({ ...config, ...secretData })).toThrow(/JWT_SECRET/);
    });
  });
});

describe('container image (Dockerfile)', () => {
  const dockerfile = readFileSync(path.join(ROOT, 'Dockerfile'), 'utf8');
  const pkg = JSON.parse(readFileSync(path.join(ROOT, 'package.json'), 'utf8')) as {
    scripts: Record<string, string>;
    devDependencies: Record<string, string>;
  };
  const instructions = dockerfile
    .replace(/\\\n/g, ' ')
    .split('\n')
    .map((line) => line.trim())
    .filter((line) => line && !line.startsWith('#'));
  const stages = instructions.filter((i) => i.startsWith('FROM '));
  const runtime = instructions.slice(instructions.lastIndexOf(stages.at(-1)!));
  const statefulSet = parseYaml(path.join(K8S_DIR, 'statefulset.yaml'))[0] as IStatefulSet;
  const configMap = parseYaml(path.join(K8S_DIR, 'configmap.yaml'))[0] as IConfigMap;

  it('builds in stages from a pinned Node 24 slim image matching the local Node', () => {
    const image = /^ARG NODE_IMAGE=node:(\d+)\.(\d+)\.(\d+)-[a-z]+-slim$/.exec(
      instructions.find((i) => i.startsWith('ARG NODE_IMAGE='))!,
    );
    expect(image).not.toBeNull();
    const [, major, minor] = image!;
    expect(pkg.devDependencies.node).toBe(`^${major}.${minor}.${image![3]}`);
    expect(major).toBe('24');
    expect(stages.length).toBeGreaterThanOrEqual(3);
    // Each stage starts from that image or from an earlier stage; the last one is fresh.
    const named = new Set<string>();
    for (const stage of stages) {
      const [, base, name] = /^FROM (\S+) AS (\S+)$/.exec(stage) ?? [];
      expect(base === '${NODE_IMAGE}' || named.has(base!)).toBe(true);
      named.add(name!);
    }
    expect(stages.at(-1)).toBe('FROM ${NODE_IMAGE} AS runtime');
  });

  it('ships production dependencies only', () => {
    expect(dockerfile).toMatch(/npm ci --omit=dev/);
    const copies = runtime.filter((i) => i.startsWith('COPY '));
    expect(copies.find((c) => c.includes('node_modules'))).toMatch(/--from=prod-deps /);
  });

  it('starts Node with V8 flags this Node accepts, the pod\'s NODE_OPTIONS included', () => {
    // V8's flags are not a stable interface: one dropped by a Node upgrade would stop every
    // container at start ("bad option", exit 9), which nothing else here would notice.
    const cmd = JSON.parse(runtime.find((i) => i.startsWith('CMD '))!.slice(4)) as string[];
    const flags = cmd.slice(1, -1);
    expect(flags.length).toBeGreaterThan(0);
    const nodeOptions = statefulSet.spec!.template.spec!.containers[0]!.env!.find((e) => e.name === 'NODE_OPTIONS')!.value!;
    const run = spawnSync(process.execPath, [...flags, '-e', '0'], {
      env: { ...process.env, NODE_OPTIONS: nodeOptions },
      encoding: 'utf8',
    });
    expect(run.stderr).toBe('');
    expect(run.status).toBe(0);
  });

  it('runs the production start command in exec form, as the pod user, with the buffer volume', () => {
    // start:prod is `NAME=value … node <flags> <entry>`: the image sets the same environment
    // (ENV) and runs the same command (CMD).
    const [, assignments, command] = /^((?:[A-Z_][A-Z0-9_]*=\S+\s+)*)(node\s.*)$/.exec(pkg.scripts['start:prod']!)!;
    const cmd = JSON.parse(runtime.find((i) => i.startsWith('CMD '))!.slice(4)) as string[];
    expect(cmd.join(' ')).toBe(command);
    const imageEnv = runtime
      .filter((i) => i.startsWith('ENV '))
      .flatMap((i) => i.slice(4).trim().split(/\s+/));
    const scriptEnv = assignments!.trim().split(/\s+/).filter(Boolean);
    expect(scriptEnv).toContain('MALLOC_ARENA_MAX=2');
    for (const assignment of scriptEnv) expect(imageEnv).toContain(assignment);
    expect(JSON.parse(runtime.find((i) => i.startsWith('ENTRYPOINT '))!.slice(11))).toEqual([
      '/usr/bin/tini',
      '--',
    ]);
    expect(runtime).toContain('STOPSIGNAL SIGTERM');
    const user = runtime.find((i) => i.startsWith('USER '))!.slice(5);
    const sc = statefulSet.spec!.template.spec!.securityContext!;
    expect(user).toBe(`${sc.runAsUser}:${sc.runAsGroup}`);
    const bufferPath = configMap.data!.BUFFER_PATH!;
    expect(runtime.find((i) => i.startsWith('ENV '))).toContain(`BUFFER_PATH=${bufferPath}`);
    expect(runtime).toContain(`VOLUME ["${bufferPath}"]`);
  });

  it('checks its health on /health/live with Node (slim images have no curl)', () => {
    const healthcheck = runtime.find((i) => i.startsWith('HEALTHCHECK '))!;
    expect(healthcheck).toMatch(/CMD \["node", "-e", ".*\/health\/live/);
  });

  it('keeps local files out of the build context', () => {
    const ignore = readFileSync(path.join(ROOT, '.dockerignore'), 'utf8').split('\n');
    expect(ignore).toContain('*');
    expect(ignore.filter((l) => l.startsWith('!')).sort()).toEqual(
      [
        '!migrations',
        '!nest-cli.json',
        '!package-lock.json',
        '!package.json',
        '!src',
        '!tsconfig.build.json',
        '!tsconfig.json',
      ].sort(),
    );
  });
});
