# The README's two commands: `make demo` and `make test`. Both install what they need.
PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
SUDO   := $(shell [ "$$(id -u)" = 0 ] || echo sudo)

.PHONY: demo test deps apt clean install screenshots

demo: deps
	$(BIN)/roombox demo

test: deps
	bash tests/run.sh

deps: apt $(VENV)/.installed

# PNGs of every room-screen page, rendered offscreen from known states (README, "Room screen").
screenshots: deps
	$(BIN)/python -m terminal.screen.samples docs/screens

# Installs only the packages that are missing, so a second run costs nothing.
apt:
	@missing=$$(grep -vE '^\s*(#|$$)' deps/apt.txt | while read -r p; do \
		dpkg-query -W -f='$${Status}' "$$p" 2>/dev/null | grep -q 'ok installed' || echo "$$p"; done); \
	if [ -n "$$missing" ]; then \
		echo "apt: installing" $$missing; \
		$(SUDO) apt-get update -qq && \
		DEBIAN_FRONTEND=noninteractive $(SUDO) apt-get install -y -qq --no-install-recommends $$missing; \
	fi

$(VENV)/.installed: pyproject.toml
	$(PYTHON) -m venv $(VENV_FLAGS) $(VENV)
	$(BIN)/pip install -q --upgrade pip
	$(BIN)/pip install -q -e '.[test]'
	touch $@

# Installs the terminal as a systemd service (root): see systemd/install.sh.
install: apt
	bash systemd/install.sh

clean:
	rm -rf $(VENV) *.egg-info
