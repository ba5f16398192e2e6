/**
 * Real receivers for approval requests: an SMTP server (smtp-server) with STARTTLS and a login,
 * whose messages are parsed as a mail client would (mailparser), and an HTTP server that keeps
 * every webhook POST.
 */
import { execFileSync } from 'node:child_process';
import { readFileSync } from 'node:fs';
import { createServer, type Server } from 'node:http';
import path from 'node:path';
import { simpleParser, type ParsedMail } from 'mailparser';
import { SMTPServer } from 'smtp-server';
import { tempDir } from './runs';

export interface MailServer {
  port: number;
  /** The CA the worker must trust (the server's own self-signed certificate). */
  caFile: string;
  messages: ParsedMail[];
  /** Envelope recipients of each message, in order. */
  recipients: string[][];
  close(): Promise<void>;
}

/** A self-signed certificate for 127.0.0.1, made with openssl for this run. */
function selfSignedCertificate(): { key: string; cert: string; certFile: string } {
  const dir = tempDir('smtp-tls-');
  const key = path.join(dir, 'key.pem');
  const cert = path.join(dir, 'cert.pem');
  execFileSync('openssl', ['req', '-x509', '-newkey', 'rsa:2048', '-nodes', '-keyout', key, '-out', cert, '-days', '2',
    '-subj', '/CN=127.0.0.1', '-addext', 'subjectAltName=IP:127.0.0.1,DNS:localhost'], { stdio: 'ignore' });
  return { key: readFileSync(key, 'utf8'), cert: readFileSync(cert, 'utf8'), certFile: cert };
}

export async function startMailServer(login: { user: string; password: string }): Promise<MailServer> {
  const tls = selfSignedCertificate();
  const messages: ParsedMail[] = [];
  const recipients: string[][] = [];
  const server = new SMTPServer({
    key: tls.key, cert: tls.cert, authMethods: ['PLAIN', 'LOGIN'], logger: false,
    onAuth(auth, session, callback) {
      if (!session.secure) return callback(new Error('authentication needs STARTTLS first'));
      if (auth.username === login.user && auth.password === login.password) return callback(null, { user: auth.username });
      return callback(new Error('Invalid username or password'));
    },
    onData(stream, session, callback) {
      simpleParser(stream).then((mail) => {
        messages.push(mail);
        recipients.push(session.envelope.rcptTo.map((r) => r.address));
        callback();
      }, callback);
    },
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const { port } = (server.server as unknown as Server).address() as { port: number };
  return { port, caFile: tls.certFile, messages, recipients, close: () => new Promise((r) => server.close(() => r())) };
}

export interface WebhookReceiver {
  url: string;
  posts: Array<{ path: string; contentType?: string; body: Record<string, unknown> }>;
  /** Answer the next N posts with this status instead of 200. */
  failNext(count: number, status: number): void;
  close(): Promise<void>;
}

export async function startWebhookReceiver(): Promise<WebhookReceiver> {
  const posts: WebhookReceiver['posts'] = [];
  let failures = { count: 0, status: 500 };
  const server = createServer((req, res) => {
    let body = '';
    req.on('data', (d) => { body += d; });
    req.on('end', () => {
      if (failures.count > 0) {
        failures.count -= 1;
        res.writeHead(failures.status).end('try later');
        return;
      }
      posts.push({ path: req.url ?? '', contentType: req.headers['content-type'], body: JSON.parse(body) });
      res.writeHead(200, { 'content-type': 'text/plain' }).end('ok');
    });
  });
  await new Promise<void>((resolve) => server.listen(0, '127.0.0.1', () => resolve()));
  const { port } = server.address() as { port: number };
  return {
    url: `http://127.0.0.1:${port}`,
    posts,
    failNext: (count, status) => { failures = { count, status }; },
    close: () => new Promise((r) => server.close(() => r())),
  };
}
