from streamtopo.cli import main

raise SystemExit(main())
