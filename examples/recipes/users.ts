// Stand-in for your session store or token verifier: the recipes only need "token in, user out".
export interface User {
  id: string;
  /** The agent streams this user may read. */
  agents: readonly string[];
}

const USERS = new Map<string, User>([
  ['token-ada', { id: 'ada', agents: ['agent-1', 'agent-2'] }],
  ['token-bob', { id: 'bob', agents: ['agent-3'] }],
]);

/** The user behind an `Authorization: Bearer …` header, or undefined. */
export function userFromAuthorization(header: string | undefined): User | undefined {
  const match = /^Bearer (\S+)$/i.exec(header ?? '');
  return match ? USERS.get(match[1] as string) : undefined;
}

/** `?agent_id=` values of the request, or every agent of the user when there are none. */
export function agentStreams(url: string, user: User): readonly string[] {
  const asked = new URL(url, 'http://x').searchParams.getAll('agent_id');
  return asked.length > 0 ? asked : user.agents;
}
