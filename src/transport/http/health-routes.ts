import type { FastifyPluginAsync } from 'fastify';
import type { CaMetrics } from '../metrics.js';

/** Why the CA cannot serve yet, or undefined when it can. */
export type ReadinessCheck = () => string | undefined;

export const healthRoutes: FastifyPluginAsync<{ ready: ReadinessCheck; metrics: CaMetrics }> = async (app, { ready, metrics }) => {
  app.get('/healthz', async () => ({ status: 'ok' }));

  app.get('/readyz', async (_request, reply) => {
    const problem = ready();
    if (problem !== undefined) return reply.status(503).send({ status: 'not ready', reason: problem });
    return { status: 'ready' };
  });

  app.get('/metrics', async (_request, reply) => {
    return reply.header('content-type', metrics.registry.contentType).send(await metrics.registry.metrics());
  });
};
