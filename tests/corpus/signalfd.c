// signalfd: a signalfd for SIGUSR1 (blocked) must still receive it.
#include "fdcorpus.h"
#include <sys/signalfd.h>

int main(void) {
  corpus_setup("signalfd");
  sigset_t m;
  sigemptyset(&m);
  sigaddset(&m, SIGUSR1);
  CHECK(sigprocmask(SIG_BLOCK, &m, NULL) == 0, "sigprocmask");
  int s = signalfd(-1, &m, SFD_NONBLOCK | SFD_CLOEXEC);
  CHECK(s >= 0, "signalfd");
  corpus_ready();
  struct signalfd_siginfo si;
  CHECK(read(s, &si, sizeof si) < 0 && errno == EAGAIN, "signal before kill");
  CHECK(kill(getpid(), SIGUSR1) == 0, "kill");
  CHECK(read(s, &si, sizeof si) == sizeof si && si.ssi_signo == SIGUSR1, "signal %u", si.ssi_signo);
  corpus_pass();
}
