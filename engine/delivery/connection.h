#pragma once
// One SMTP connection of a SitePool: the TCP connect (with failover to the
// next host), the smtp::Session over the reactor's socket, and the drive
// loop that turns session events into pool actions (next job, idle, QUIT,
// close). The protocol itself is engine/smtp/session (no I/O); this is the
// I/O and the pool plumbing around it.
//
// Owned by its Shard (registry); freed in the reactor's Close callback
// (after which no callback for its fd can run). Shard thread only.
#include <cstdint>
#include <memory>
#include <optional>
#include <string>
#include <vector>

#include "absl/time/time.h"
#include "engine/delivery/site.h"
#include "engine/delivery/source.h"
#include "engine/reactor/reactor.h"
#include "engine/shaping/throttle.h"
#include "engine/smtp/session.h"

namespace salvo::delivery {

class Shard;
class SitePool;

class Connection {
 public:
  enum class State : uint8_t {
    kConnecting,  // TCP connect in flight (connect timer armed)
    kOpening,     // session up to its first kReady (greeting, EHLO, STARTTLS, AUTH)
    kBusy,        // a transaction (or QUIT) in flight
    kIdle,        // ready, in the pool's idle list, idle timer armed
    kEnding,      // the session is over; its last bytes are being written
    kClosing,     // reactor Close issued: Destroyed() runs next
  };

  Connection(Shard* shard, SitePool* pool);
  ~Connection() { ReleaseSlots(); }

  // The shaping keys' connection slots this connection holds (taken by the
  // pool before it opens); given back when it is gone.
  void TakeSlots(std::shared_ptr<shaping::KeyState> own,
                 std::shared_ptr<shaping::KeyState> provider) {
    own_slot_ = std::move(own);
    provider_slot_ = std::move(provider);
  }

  // Connects to host `host_index` of the pool's current SiteInfo.
  void ConnectTo(size_t host_index);
  // Gives a ready connection a job; false when the job could not start (it
  // was reported).
  bool StartJob(Job job);
  // The session is ready (again): take the next job, go idle or QUIT.
  void OnReady();
  // Ends the session gracefully: QUIT when idle (drain, idle timeout).
  void Quit();
  // Now: the open transaction (if any) is reported deferred; closes.
  void Abandon(const smtp::Outcome& open_outcome);

  // [queue] durable_before_next: the shard's result batch whose record this
  // connection's next transaction (its end of data with DATA, its start with
  // BDAT) waits for, and the shard's word that it is recorded.
  uint64_t AwaitsDurable() const { return awaits_durable_; }
  // Its transaction's end of data is held (else it waits to start one).
  bool HoldsEnd() const { return session_ && session_->end_held(); }
  void DurableNow();

  State state() const { return state_; }
  SitePool* pool() const { return pool_; }
  int fd() const { return fd_; }
  void Drive();

 private:
  void OnConnected(int res);
  void FailBeforeConnect(int err);
  void ReportJob(std::vector<smtp::Outcome> outcomes);
  void Flush();
  void ArmDeadline();
  void MakeIdle();
  void Unidle();
  void SessionFinished();
  void HostFailed(const smtp::Outcome& outcome, bool mark_down);
  void Close(int retry_host);
  void Destroyed(int retry_host);
  const std::string& label() const { return info_->hosts[host_].label; }
  void ReleaseSlots() {
    if (own_slot_) own_slot_->ReleaseConnection();
    if (provider_slot_) provider_slot_->ReleaseConnection();
    own_slot_.reset();
    provider_slot_.reset();
  }

  Shard* shard_;
  SitePool* pool_;
  State state_ = State::kConnecting;
  std::shared_ptr<const SiteInfo> info_;  // the host list this connection uses
  size_t host_ = 0;
  int fd_ = -1;
  std::unique_ptr<smtp::Session> session_;
  // Facts beside the state: the session reached kReady once (failures after
  // that are not the host's fault), and a write is in flight (the buffer
  // must stay put until it completes).
  bool ever_ready_ = false;
  bool send_in_flight_ = false;
  // The output being sent (the reactor needs it stable): the session's
  // command bytes and, in place, views of the message bodies it sends
  // unchanged, whose owners it holds until the send completes.
  smtp::OutputBuffer wbuf_;
  std::vector<std::string_view> segments_;  // wbuf_'s segments for SendV (reused)
  std::optional<Job> job_;
  uint64_t envelope_id_ = 0;
  uint64_t messages_ = 0;
  uint64_t awaits_durable_ = 0;       // the result batch of its last final outcome
  metrics::DomainSlot domain_label_;  // the site's `domain` label for connection counts
  absl::Time transaction_started_;    // for salvo_smtp_transaction_seconds
  smtp::Outcome close_outcome_;
  reactor::TimerId connect_timer_ = 0;
  reactor::TimerId deadline_timer_ = 0;
  absl::Time armed_deadline_ = absl::InfiniteFuture();
  reactor::TimerId idle_timer_ = 0;
  std::shared_ptr<shaping::KeyState> own_slot_;
  std::shared_ptr<shaping::KeyState> provider_slot_;
};

}  // namespace salvo::delivery
