//go:build !(linux && (amd64 || arm64))

package resolver

import "net"

func (s *Server) serveUDP(c *net.UDPConn) { s.serveUDPSimple(c) }
