package api

import (
	"encoding/json"
	"io"
	"net"
	"strconv"
	"syscall"

	"batteryswap/models"
)

// Listener wraps the server's listener so that the one error net/http
// answers by itself before any handler runs, 431 for a request whose header
// is over http.Server.MaxHeaderBytes, comes in the contract's JSON error
// shape like every other error, not as net/http's line of text. Serve the
// Handler on it.
//
// net/http writes that answer straight to the connection, in one write of a
// fixed text; the connection swaps exactly that write for the JSON one.
// Everything else passes through untouched.
func Listener(ln net.Listener, maxHeaderBytes int) net.Listener {
	return &jsonErrorListener{Listener: ln, answer431: headersTooLargeAnswer(maxHeaderBytes)}
}

// plain431 is net/http's own answer to a header over MaxHeaderBytes
// (net/http/server.go, conn.serve); TestOversizedHeaderAnswersJSON fails if
// a new Go version changes it.
const plain431 = "HTTP/1.1 431 Request Header Fields Too Large\r\nContent-Type: text/plain; charset=utf-8\r\nConnection: close\r\n\r\n431 Request Header Fields Too Large"

func headersTooLargeAnswer(maxHeaderBytes int) []byte {
	body, _ := json.Marshal(errorBody{Error: errorDetail{Code: models.CodeHeadersTooLarge,
		Message: "the request header is too large: at most " + strconv.Itoa(maxHeaderBytes>>10) + " KiB"}})
	return []byte("HTTP/1.1 431 Request Header Fields Too Large\r\n" +
		"Content-Type: application/json\r\n" +
		"Content-Length: " + strconv.Itoa(len(body)) + "\r\n" +
		"X-Content-Type-Options: nosniff\r\n" +
		"Connection: close\r\n\r\n" + string(body))
}

type jsonErrorListener struct {
	net.Listener
	answer431 []byte
}

func (l *jsonErrorListener) Accept() (net.Conn, error) {
	c, err := l.Listener.Accept()
	if err != nil {
		return nil, err
	}
	jc := &jsonErrorConn{Conn: c, answer431: l.answer431}
	if _, ok := c.(syscall.Conn); ok {
		return &jsonErrorSocket{jc}, nil
	}
	return jc, nil
}

// jsonErrorConn is one accepted connection (Listener). It keeps what
// net/http looks for in a *net.TCPConn: CloseWrite, for a graceful close
// after an error answer, and ReadFrom, for sendfile.
type jsonErrorConn struct {
	net.Conn
	answer431 []byte
}

func (c *jsonErrorConn) Write(p []byte) (int, error) {
	if len(p) == len(plain431) && string(p) == plain431 {
		if _, err := c.Conn.Write(c.answer431); err != nil {
			return 0, err
		}
		return len(p), nil
	}
	return c.Conn.Write(p)
}

// CloseWrite shuts the sending side down, as net/http does after an error
// answer, so that the client reads the answer before the connection closes.
func (c *jsonErrorConn) CloseWrite() error {
	if cw, ok := c.Conn.(interface{ CloseWrite() error }); ok {
		return cw.CloseWrite()
	}
	return c.Conn.Close()
}

// ReadFrom lets net/http send files with sendfile, as on a bare
// connection; net/http never writes its 431 this way.
func (c *jsonErrorConn) ReadFrom(r io.Reader) (int64, error) {
	if rf, ok := c.Conn.(io.ReaderFrom); ok {
		return rf.ReadFrom(r)
	}
	return io.Copy(struct{ io.Writer }{c.Conn}, r)
}

// jsonErrorSocket is a jsonErrorConn over a socket: it hands the socket to
// the streams, which write to it directly (stream_sock_unix.go).
type jsonErrorSocket struct{ *jsonErrorConn }

// SyscallConn returns the socket.
func (c *jsonErrorSocket) SyscallConn() (syscall.RawConn, error) {
	return c.Conn.(syscall.Conn).SyscallConn()
}
