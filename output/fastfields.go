package output

// Keys of a connection record, as bits of what fastDecoder.parse saw.
const (
	fType = iota
	fID
	fPeerID
	fListenerID
	fRole
	fFamily
	fLocalAddr
	fRemoteAddr
	fLocalPort
	fRemotePort
	fNetNS
	fPID
	fComm
	fCgroupID
	fCgroup
	fContainerID
	fContainerRuntime
	fPodUID
	fUnit
	fStart
	fEnd
	fDuration
	fHandshake
	fSynRecv
	fSynRecvMethod
	fRetransmits
	fBytesReceived
	fBytesAcked
	fClosedBy
	fOutcome
	fErrno
	fFlags
	fTimeline
)

// field reads the value of key into d.j; it returns the key's bit (0 for
// a key it leaves to encoding/json), and the timeline's JSON.
func (d *fastDecoder) field(s *scanner, key []byte) (uint64, []byte) {
	j := &d.j
	switch string(key) {
	case "type":
		s.skipString()
		return 1 << fType, nil
	case "id":
		j.ID = s.uint(64)
		return 1 << fID, nil
	case "peer_id":
		j.PeerID = s.uint(64)
		return 1 << fPeerID, nil
	case "listener_id":
		j.ListenerID = s.uint(64)
		return 1 << fListenerID, nil
	case "role":
		j.Role = d.intern(s.str())
		return 1 << fRole, nil
	case "family":
		j.Family = d.intern(s.str())
		return 1 << fFamily, nil
	case "local_addr":
		j.LocalAddr = d.addr(s, &d.local)
		return 1 << fLocalAddr, nil
	case "remote_addr":
		j.RemoteAddr = d.addr(s, &d.remote)
		return 1 << fRemoteAddr, nil
	case "local_port":
		j.LocalPort = uint16(s.uint(16))
		return 1 << fLocalPort, nil
	case "remote_port":
		j.RemotePort = uint16(s.uint(16))
		return 1 << fRemotePort, nil
	case "netns":
		j.NetNS = uint32(s.uint(32))
		return 1 << fNetNS, nil
	case "pid":
		j.PID = uint32(s.uint(32))
		return 1 << fPID, nil
	case "comm":
		j.Comm = d.intern(s.str())
		return 1 << fComm, nil
	}
	return d.field2(s, key)
}

// cgroupField reads the owner's cgroup keys.
func (d *fastDecoder) cgroupField(s *scanner, key []byte) uint64 {
	j := &d.j
	switch string(key) {
	case "cgroup_id":
		j.CgroupID = s.uint(64)
		return 1 << fCgroupID
	case "cgroup":
		j.Cgroup = d.intern(s.str())
		return 1 << fCgroup
	case "container_id":
		j.ContainerID = d.intern(s.str())
		return 1 << fContainerID
	case "container_runtime":
		j.ContainerRuntime = d.intern(s.str())
		return 1 << fContainerRuntime
	case "pod_uid":
		j.PodUID = d.intern(s.str())
		return 1 << fPodUID
	case "unit":
		j.Unit = d.intern(s.str())
		return 1 << fUnit
	}
	return 0
}

// field2 is field for the keys after "comm" (and cgroupField for the
// cgroup's).
func (d *fastDecoder) field2(s *scanner, key []byte) (uint64, []byte) {
	j := &d.j
	switch string(key) {
	case "start":
		s.time(&j.Start)
		return 1 << fStart, nil
	case "end":
		s.time(&j.End)
		return 1 << fEnd, nil
	case "duration_us":
		j.DurationUs = s.int()
		return 1 << fDuration, nil
	case "handshake_us":
		j.HandshakeUs = s.optInt(&d.handshake)
		return 1 << fHandshake, nil
	case "syn_recv_us":
		j.SynRecvUs = s.optInt(&d.synRecv)
		return 1 << fSynRecv, nil
	case "syn_recv_method":
		j.SynRecvMethod = d.intern(s.str())
		return 1 << fSynRecvMethod, nil
	case "retransmits":
		return d.retransmits(s), nil
	case "bytes_received":
		j.BytesReceived = s.uint(64)
		return 1 << fBytesReceived, nil
	case "bytes_acked":
		j.BytesAcked = s.uint(64)
		return 1 << fBytesAcked, nil
	case "closed_by":
		j.ClosedBy = d.intern(s.str())
		return 1 << fClosedBy, nil
	case "outcome":
		j.Outcome = d.intern(s.str())
		return 1 << fOutcome, nil
	case "errno":
		j.Errno = d.intern(s.str())
		return 1 << fErrno, nil
	case "flags":
		d.flags(s)
		return 1 << fFlags, nil
	case "timeline":
		start := s.i
		s.skip(0)
		return 1 << fTimeline, s.b[start:s.i]
	}
	return d.cgroupField(s, key), nil
}

// addr reads an address or null into *to.
func (d *fastDecoder) addr(s *scanner, to *string) *string {
	if s.null() {
		return nil
	}
	*to = d.intern(s.str())
	return to
}

// retransmits reads the "retransmits" object, every key at most once.
func (d *fastDecoder) retransmits(s *scanner) uint64 {
	r := &d.j.Retransmits
	if !s.expect('{') {
		return 0
	}
	var seen uint8
	for first := true; !s.bad; first = false {
		s.ws()
		if first && s.peek('}') {
			return 1 << fRetransmits
		}
		key := s.str()
		s.ws()
		s.expect(':')
		s.ws()
		var bit uint8
		switch string(key) {
		case "syn":
			bit, r.Syn = 1, uint32(s.uint(32))
		case "synack":
			bit, r.SynAck = 2, uint32(s.uint(32))
		case "data":
			bit, r.Data = 4, uint32(s.uint(32))
		case "fin":
			bit, r.Fin = 8, uint32(s.uint(32))
		}
		if bit == 0 || seen&bit != 0 {
			return 0
		}
		seen |= bit
		s.ws()
		if !s.peek(',') {
			s.expect('}')
			break
		}
	}
	return 1 << fRetransmits
}

// flags reads the "flags" array of names.
func (d *fastDecoder) flags(s *scanner) {
	if !s.expect('[') {
		return
	}
	s.ws()
	if s.peek(']') {
		return
	}
	for !s.bad {
		s.ws()
		d.j.Flags = append(d.j.Flags, d.intern(s.str()))
		s.ws()
		if !s.peek(',') {
			s.expect(']')
			return
		}
	}
}
