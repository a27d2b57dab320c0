// The peer: a minimal `ws` broadcast server (the "broadcast to every other client"
// example of the ws README). Publishers connect with ?role=pub and are not broadcast
// to, so every server in the benchmark delivers to the same subscriber set.
//
//   node ws_server.mjs PORT
import { WebSocket, WebSocketServer } from "ws";

const port = Number(process.argv[2]);
const server = new WebSocketServer({ host: "127.0.0.1", port, perMessageDeflate: false });
const subscribers = new Set();

server.on("connection", (socket, request) => {
  if (!request.url.includes("role=pub")) {
    subscribers.add(socket);
    socket.on("close", () => subscribers.delete(socket));
  }
  socket.on("message", (data, isBinary) => {
    for (const client of subscribers) {
      if (client !== socket && client.readyState === WebSocket.OPEN) {
        client.send(data, { binary: isBinary });
      }
    }
  });
});
server.on("listening", () => console.log(`ws broadcast server on 127.0.0.1:${port}`));
process.on("SIGTERM", () => server.close(() => process.exit(0)));
