"""The web pages `relay serve` serves: the join page, the host console and the operator view
(control/web/pages.py). Their HTML, JavaScript and CSS are in control/web/assets/, shipped in
the package: nothing is built at install time."""
